import re

from hfdistill import __version__
from hfdistill.provenance import environment


def test_the_environment_names_packages_commit_and_time():
    record = environment()
    assert record["packages"]["hfdistill"] == __version__ and record["packages"]["torch"]
    assert record["packages"]["sentence-transformers"].split(".")[0].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["time"])
    assert record["hfdistill_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["hfdistill_commit"])
