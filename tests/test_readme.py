"""The README's figures are the committed benchmark results, not hand-typed numbers."""

from benchmarks.readme_tables import README, RENDERERS, readme_table, render, source


def test_every_readme_table_matches_its_results_json():
    readme = README.read_text()
    for name in RENDERERS:
        assert source(name).exists(), name
        assert readme_table(name, readme) == render(name), "run python -m benchmarks.readme_tables"


def test_quickstart_is_the_two_dev_commands():
    readme = README.read_text()
    assert "./dev.sh demo" in readme and "./dev.sh test" in readme
