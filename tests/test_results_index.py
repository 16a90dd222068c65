"""results/INDEX.md covers every file under results/ and is the one `refimpl reproduce results-index` builds."""

from refimpl.reproduce import results_index


def test_every_result_file_has_a_row():
    assert results_index.uncovered() == []


def test_the_committed_index_is_current():
    assert (results_index.REPO / "results" / "INDEX.md").read_text(encoding="utf-8") == results_index.build(), \
        "results/INDEX.md is stale: run `refimpl reproduce results-index`"


def test_an_unlisted_file_is_found(tmp_path):
    (tmp_path / "results" / "nexus").mkdir(parents=True)
    (tmp_path / "results" / "nexus" / "new.json").write_text("{}")
    (tmp_path / "results" / "INDEX.md").write_text("| `nexus/old.json` | `x` | - |\n")
    assert results_index.uncovered(tmp_path) == ["nexus/new.json"]


def test_citations_follow_patterns():
    cites = {"results/nexus/nexus_bert_*_2^12.json": {"docs/a.md"}, "results/x_{a,b}.json": {"README.md"}}
    assert results_index.cited_by("nexus/nexus_bert_m_2^12.json", cites) == ["docs/a.md"]
    assert results_index.cited_by("x_b.json", cites) == ["README.md"]
    assert results_index.cited_by("x_c.json", cites) == []
