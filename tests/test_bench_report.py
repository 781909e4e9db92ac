"""docs/performance.md is rewritten by `python -m bench`: a run replaces the tables it measured and keeps the rest."""

from bench.report import Report


def test_a_bench_run_replaces_its_table_and_keeps_the_paragraphs_written_after_each_table(tmp_path):
    doc = tmp_path / "performance.md"
    Report(str(doc)).finish({}, machine="first", total_s=1)  # an empty document in the report's own layout
    first = Report(str(doc))
    first.set("writes", "| old table |", command="python -m bench writes", seconds=1)
    first.set("cold", "| cold table |", command="python -m bench cold", seconds=1)
    first.finish({}, machine="first", total_s=1)
    text = doc.read_text()
    text = text.replace("<!-- /bench:writes -->\n", "<!-- /bench:writes -->\n\nWhy the rebuild row is slow, by hand.\n")
    doc.write_text(text)

    again = Report(str(doc))
    again.set("writes", "| new table |", command="python -m bench writes", seconds=1)
    again.finish({}, machine="second", total_s=1)

    text = doc.read_text()
    assert "| new table |" in text and "| old table |" not in text
    assert "| cold table |" in text
    assert text.index("| new table |") < text.index("Why the rebuild row is slow, by hand.") < text.index("| cold table |")
    assert text.count("Why the rebuild row is slow, by hand.") == 1
