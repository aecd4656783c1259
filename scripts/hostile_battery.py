"""Run the hostile-user battery (bad options, bad files, folders in use, resumes that do not match, exports over a
student, garbage batch sizes) and print its counts: tried, clean (one line naming the problem, nothing written or
lost), failing.

    HF_HUB_OFFLINE=1 python scripts/hostile_battery.py

Each case is a parametrised test that fails unless the recipe ends in exactly that line and leaves every file as it
was; the battery is the set of them, run as CI runs them.
"""

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATTERY = [
    "tests/test_distill_recipe.py::test_bad_input_ends_in_one_line_before_anything_is_written",
    "tests/test_distill_recipe.py::test_a_run_folder_holds_one_run_overwrite_starts_over_and_a_changed_resume_is_refused",
    "tests/test_recipes.py::test_a_model_that_is_not_a_sound_student_ends_in_one_line",
    "tests/test_recipes.py::test_an_option_out_of_range_ends_in_one_line_and_writes_nothing",
    "tests/test_recipes.py::test_encoding_with_a_batch_size_below_one_is_refused_not_garbage",
    "tests/test_cli.py::test_settings_that_cannot_train_are_rejected_when_parsed",
    "tests/test_cli.py::test_config_values_are_typed_as_on_the_command_line_and_name_the_file",
    "tests/test_cli.py::test_config_errors",
    "tests/test_preflight.py",
    "tests/test_documents.py::test_document_options_are_checked_when_parsed",
    "tests/test_embedding_cache.py",
]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "battery.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        *BATTERY], cwd=ROOT)  # fmt: skip
        cases = ElementTree.parse(report).getroot().iter("testcase")
        outcomes = [next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "clean")
                    for case in cases]  # fmt: skip
    failing = outcomes.count("failure") + outcomes.count("error")
    print(f"battery: {len(outcomes)} tried, {outcomes.count('clean')} clean, {failing} failing, "
          f"{outcomes.count('skipped')} skipped")  # fmt: skip
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
