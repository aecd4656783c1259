"""The README as a newcomer runs it: the quick start distills a student, which then loads both ways shown."""

import os
import re

import pytest

from tests.conftest import ROOT, run_script


@pytest.mark.slow
def test_readme_python_snippets_run_in_order(minilm, real_queries, tmp_path):
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(snippets) == 3  # the quick start, then the student loaded by sentence-transformers and transformers
    (tmp_path / "queries.txt").write_text("\n".join(real_queries[:2300]) + "\n")  # 300 to train on, 2,000 held out
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    outputs = []
    for snippet in snippets:
        snippet = snippet.replace('"out/', f'"{tmp_path}/out/').replace('"queries.txt"', f'"{tmp_path}/queries.txt"')
        outputs.append(run_script(["-c", snippet], env).stdout)
    assert (tmp_path / "out" / "minilm-2L" / "router_config.json").is_file()
    assert re.search(r"tensor\(\[\[0\.\d+\]\]\)", outputs[1])  # the student-teacher similarity of the example
