"""The ``#@podstack`` line, read as the official SDK 1.7.0 writes it (``GPURunner._build_annotation`` and
the code ``submit`` prepends), and the execution log's bound on kept output."""

from __future__ import annotations

from pathlib import Path

import pytest

from podstack_jupyter.errors import InvalidArgumentError
from podstack_jupyter.server.annotation import embedded_requirements, parse_annotation
from podstack_jupyter.server.executions import EventLog


def test_defaults_are_the_sdks_left_out_values():
    spec = parse_annotation("#@podstack gpu=L40S\n\nprint(1)").spec
    assert (spec.type, spec.count, spec.fraction, spec.timeout, spec.pip, spec.env) == ("L40S", 1, 100, 3600.0, (), None)
    assert parse_annotation("print('no line at all')").spec.type is None


def test_every_key_the_sdk_writes():
    code = "#@podstack gpu=A100_80GB count=2 timeout=90 env=nlp pip=transformers,datasets uv=tokenizers use_uv=true\n"
    annotation = parse_annotation(code + "print(1)")
    spec = annotation.spec
    assert (spec.type, spec.count, spec.timeout, spec.env) == ("A100-80G", 2, 90.0, "nlp")
    assert spec.pip == ("transformers", "datasets", "tokenizers") and spec.use_uv
    assert annotation.options["pip"] == "transformers,datasets"
    assert parse_annotation("#@podstack gpu=T4 fraction=50\n").spec.fraction == 50
    assert parse_annotation("#@podstack gpu=H100_80GB\n").spec.type == "H100"
    assert parse_annotation("#@podstack gpu=any\n").spec.type is None


def test_the_line_after_the_sdks_preamble_is_found():
    """``env_vars`` lines and the install preamble come before the annotation; a later line that looks
    like one (inside the code) does not count."""
    code = ("import os\nos.environ['A'] = '1'\n\n# Helper function to stream install output\nimport subprocess\n"
            "#@podstack gpu=T4 timeout=30\n\nx = 1\n#@podstack gpu=H100\n")
    spec = parse_annotation(code).spec
    assert spec.type == "T4" and spec.timeout == 30.0


def test_requirements_text_embedded_by_the_sdk_becomes_the_environment(tmp_path):
    text = "numpy>=1.20\n# a comment\n"
    code = (f'_requirements = """{text}"""\n\nwith open("/tmp/requirements.txt", "w") as f:\n    f.write(_requirements)\n'
            f"#@podstack gpu=T4 requirements=my reqs/requirements.txt\nprint(1)\n")
    assert embedded_requirements(code) == text
    spec = parse_annotation(code, requirements_folder=tmp_path).spec
    assert Path(spec.requirements).read_text() == text
    # the same text: the same file, so the backend's cached environment is reused
    assert parse_annotation(code, requirements_folder=tmp_path).spec.requirements == spec.requirements


@pytest.mark.parametrize("line, named", [
    ("#@podstack gpu=L40S colour=red", "unknown key 'colour'"),
    ("#@podstack gpu=L40S count=two", "count must be a whole number"),
    ("#@podstack gpu=L40S count=1 count=2", "count= twice"),
    ("#@podstack gpu=L40S timeout=soon", "timeout must be a positive"),
    ("#@podstack gpu=L40S timeout=nan", "timeout must be a positive"),
    ("#@podstack gpu=L40S fraction=0", "fraction"),
    ("#@podstack gpu=L40S count=2 fraction=50", "fraction below 100"),
    ("#@podstack gpu=L40S env=quantum", "unknown environment preset 'quantum'"),
    ("#@podstack gpu=", "gpu= without a value"),
    ("#@podstack gpu=L40S stray", "'stray', which is not key=value"),
    ("#@podstack gpu=L40S use_uv=maybe", "use_uv must be true or false"),
    ("#@podstackgpu=L40S", "a space after #@podstack"),
    ("#@podstack gpu=L40S nfs=weights:/mnt/w", "mounts no NFS"),
    ("#@podstack gpu=L40S buckets=data", "mounts no buckets"),
    ("#@podstack gpu=L40S runner=torch", "runner="),
])
def test_a_bad_line_is_refused_naming_the_key(line, named):
    with pytest.raises(InvalidArgumentError) as raised:
        parse_annotation(line + "\nprint(1)\n")
    assert named in raised.value.message


def test_the_log_keeps_the_beginning_and_the_end_of_too_much_output():
    """Over the limit, the middle goes and a note says how much; the end (where @podstack.gpu prints
    its result) and every status event stay."""
    log = EventLog(limit=4096)
    log.append({"status": "running", "type": "status"})
    for i in range(1000):
        log.append({"type": "stdout", "content": f"line {i:04d}\n"})
    log.append({"type": "stdout", "content": "__PODSTACK_RESULT__\n{'loss': 0.1}\n"})
    log.append({"status": "completed", "type": "status"})
    text = log.text()
    assert text.startswith("line 0000\nline 0001\n")
    assert text.endswith("line 0999\n__PODSTACK_RESULT__\n{'loss': 0.1}\n")
    assert "characters of output were not kept" in text and len(text) < 4096 + 200
    events = log.events()
    assert [e["status"] for e in events if e.get("type") == "status"] == ["running", "completed"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert log.events(after=events[-2]["seq"]) == [events[-1]]


def test_one_huge_piece_of_output_keeps_its_end():
    log = EventLog(limit=2048)
    log.append({"type": "stdout", "content": "x" * 100_000 + "THE END\n"})
    assert log.text().endswith("xxTHE END\n") and len(log.text()) < 2048 + 200
