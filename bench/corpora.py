"""The corpora the benchmarks run on, and real questions for each (never made-up query strings)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .measure import REPO

DATA = Path(os.environ.get("QA_DATA_DIR", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Corpus:
    """A folder (or file) that ``qa index`` reads, how its documents get ids, and where its questions come from."""

    name: str
    label: str
    path: Path
    ids: str = "stem"

    def available(self) -> bool:
        return self.path.exists()

    def queries(self, n: int, seed: int = 0) -> list[str]:
        """Up to ``n`` real queries: the seed question file, BBC headlines, or MultiHop-RAG's questions."""
        if self.name == "seeds":
            rows = [json.loads(line) for line in (REPO / "tests" / "data" / "seed_questions.jsonl").open()]
            found = [r["question"] for r in rows]
        elif self.name == "bbc":
            found = []
            for path in sorted(self.path.rglob("*.txt")):
                head = path.read_bytes()[:300].decode("utf-8", errors="ignore").strip().splitlines()
                if head:
                    found.append(head[0].strip())
        elif self.name == "multihop":
            found = [q["query"] for q in json.loads((self.path.parent / "MultiHopRAG.json").read_text())]
        else:
            raise ValueError(self.name)
        random.Random(seed).shuffle(found)
        return found[:n]


CORPORA = {
    "seeds": Corpus("seeds", "seed articles", REPO / "seeds"),
    "bbc": Corpus("bbc", "BBC News (2,225 articles)", DATA / "bbc-news", ids="path"),
    "multihop": Corpus("multihop", "MultiHop-RAG (609 articles)", DATA / "multihop-rag" / "corpus.json"),
}
