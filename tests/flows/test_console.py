"""The console keeps the story; library chatter goes to the command's log file (issue 13)."""

from __future__ import annotations

import logging
import warnings

from rich.console import Console

from flows.cli.console import StoryDisplay, command_log, current_log


def test_command_log_takes_library_chatter_off_the_console_and_puts_it_back(tmp_path, capfd):
    libraries = ("transformers", "prefect", "mlflow")
    with command_log("import", home=tmp_path, libraries=libraries):
        pass  # the libraries set up their own console handlers on first import
    before = {name: list(logging.getLogger(name).handlers) for name in ("", "mlflow", "prefect")}
    with command_log("probe", home=tmp_path, libraries=libraries) as path:
        assert current_log() == path and path.parent == tmp_path / "logs"
        warnings.warn("an input example was not provided", UserWarning, stacklevel=1)
        logging.getLogger("mlflow.models").warning("successfully registered model")
        logging.getLogger("prefect.task_runs").info("Finished in state Completed()")
        logging.getLogger("transformers.modeling_utils").warning("loading weights")
        logging.getLogger("components.lm_training").info("anchor: step 3/9")
    console = capfd.readouterr()
    for said in ("an input example", "successfully registered", "Finished in state",
                 "loading weights", "step 3/9"):
        assert said not in console.out + console.err
        assert said in path.read_text()
    assert current_log() is None
    assert {name: list(logging.getLogger(name).handlers) for name in before} == before


def test_story_display_prints_steps_and_keeps_status_off_a_non_terminal(tmp_path):
    console = Console(file=(tmp_path / "screen.txt").open("w"), force_terminal=False, width=100)
    with command_log("probe", home=tmp_path, libraries=()), StoryDisplay(console) as display:
        display.step("1/2 first step")
        logging.getLogger("components.lm_training").info(
            "expert: step 5/10", extra={"flexo_progress": (5, 10)})
        task = display.progress.tasks[0]
        assert (task.completed, task.total) == (5, 10)
        assert "expert: step 5/10" in task.description
        display.step("2/2 second step")
    console.file.close()
    screen = (tmp_path / "screen.txt").read_text().splitlines()
    assert [line for line in screen if line.strip()] == ["1/2 first step", "2/2 second step"]
