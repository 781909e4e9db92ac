"""Offline question answering over news articles, with exact character citations.

The core object is :class:`qa.index.NewsIndex`; the ``qa`` command and the web app are thin layers over it.
"""

from .settings import Settings

__all__ = ["Settings", "NewsIndex"]


def __getattr__(name):
    # NewsIndex pulls in FAISS; import it only when asked for, so `import qa` stays cheap.
    if name == "NewsIndex":
        from .index import NewsIndex

        return NewsIndex
    raise AttributeError(name)
