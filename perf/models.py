"""Which model a run measures: `--model` resolved to what from_pretrained gets and the name
results and baselines use; its folder checked for what a load needs (config, whole weights,
tokenizer) before any backend loads; and its identity (model_identity), which baseline entries
keep so that another model under the same name is not judged against them. Plain errors
(perf.options.OptionError), shared by the plugin and the tools."""
import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

from perf import synthetic
from perf.options import NAME_MAX, OptionError
from perf.protocol import EMBEDDED_MODEL


def resolve_model(text: str | None) -> tuple[str, str]:
    """(what from_pretrained gets, the model's name), or an OptionError."""
    if text is None:
        return str(EMBEDDED_MODEL), EMBEDDED_MODEL.name
    if not text.strip():
        raise OptionError(f"--model {text!r}: empty; give a folder holding a BLOOM checkpoint, a cached HF id or "
                          "synthetic:bloom-560m (leave --model out for the embedded tiny-bloom)")
    if text.startswith("synthetic:"):
        try:
            _, _, name = synthetic.parse(text)
        except ValueError as exc:
            raise OptionError(f"--model {text!r}: {exc}") from None
        return text, name  # built at the session's first load (perf/conftest.py)
    path = Path(text).expanduser()
    try:
        looks_like_path = path.is_absolute() or text.startswith((".", "~")) or path.exists()
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a loop of links...
        raise OptionError(f"--model {text!r}: {exc.strerror}; give a folder holding a BLOOM checkpoint") from None
    if looks_like_path or text.count("/") > 1:
        if not is_dir and path.is_file():
            raise OptionError(f"--model {text!r}: a file; give the folder that holds it (a BLOOM checkpoint: "
                              "config.json, weights, tokenizer)")
        if not is_dir:
            raise OptionError(f"--model {text!r}: no such folder; give a folder holding a "
                              "BLOOM checkpoint (config.json, weights, tokenizer) or a cached HF id")
        config = path / "config.json"
        name = path.resolve().name
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(text, "config.json")
        if not isinstance(cached, str):
            raise OptionError(
                f"--model {text!r}: no folder of that name here, and not in the local Hugging Face cache (this "
                "suite never downloads): give a local folder, synthetic:bloom-560m or synthetic:bloom-7b1, leave "
                f"--model out for the embedded tiny-bloom, or run `hf download {text}` where there is network")
        config, name = Path(cached), text.replace("/", "--")
    data = _read_config(config.parent, f"--model {text!r}")
    model_type = data.get("model_type")
    if model_type != "bloom":
        raise OptionError(f"--model {text!r}: {config} says model_type {model_type!r}; "
                          "this suite runs BLOOM checkpoints (model_type 'bloom')")
    longest = f"{name}.history.jsonl.torn"  # the longest file name of its baselines
    if len(longest.encode()) > NAME_MAX:
        raise OptionError(f"--model {text!r}: a name of {len(name.encode())} bytes; its baseline files are named after "
                          f"it ({longest[:12]}...), and a file name may have at most {NAME_MAX}: rename the folder "
                          f"to under {NAME_MAX - len(longest) + len(name)} characters")
    # Absolute: workers run in their log folder.
    return (str(path.resolve()) if looks_like_path else text), name


def checkpoint_identity(model: str, text: str | None) -> dict | None:
    """The identity of the resolved model `model` (resolve_model's first value), after checking its
    folder (check_checkpoint); None for a synthetic model, built and checked at its first load."""
    if model.startswith("synthetic:"):
        return None
    shown = f"--model {text!r}" if text is not None else f"the embedded model {EMBEDDED_MODEL}"
    folder = Path(model)
    if not folder.is_absolute():  # a cached HF id: its snapshot folder
        from huggingface_hub import try_to_load_from_cache
        folder = Path(try_to_load_from_cache(model, "config.json")).parent
    return check_checkpoint(folder, shown)


# -- what a checkpoint folder holds, checked before any backend loads it -------------------------------
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
TOKENIZER = "tokenizer.json"  # BLOOM's tokenizer is a fast one only: this file is all it loads from
# Config keys that say how a file was saved, not what the model computes.
BOOKKEEPING = ("_name_or_path", "transformers_version")


def check_checkpoint(folder: Path, shown: str) -> dict:
    """The model identity of a checkpoint folder (model_identity), after checking that it holds
    what from_pretrained needs: config.json, whole weights, the tokenizer. OptionError naming the
    folder, the file and what is missing otherwise; `shown`: how the user named it (--model ...)."""
    folder = Path(folder)
    config = _read_config(folder, shown)
    tensors, weight_files = _weights(folder, shown)
    tokenizer = folder / TOKENIZER
    if not tokenizer.is_file():
        raise OptionError(f"{shown}: {folder} has no {TOKENIZER} (BLOOM's tokenizer); copy it from the model's "
                          "source (it comes with every BLOOM checkpoint) or give a complete folder")
    try:
        json.loads(tokenizer.read_bytes())
    except (OSError, ValueError) as exc:
        raise OptionError(f"{shown}: {tokenizer} is not a readable tokenizer ({exc}); copy it again from the "
                          "model's source") from None
    return model_identity(config, tensors, weight_files)


def model_identity(config: dict, tensors: list[tuple[str, str, list[int]]], weight_files: dict) -> dict:
    """Which model this is, cheaply: digests of its configuration (less bookkeeping keys) and of
    its weights' names, dtypes and shapes (from the safetensors headers; a pytorch .bin gives only
    its files' sizes), with the figures a message can show. Two checkpoints of one architecture
    and shapes are the same model for timing, whatever the values of their weights."""
    settings = {("dtype" if k == "torch_dtype" else k): v for k, v in config.items() if k not in BOOKKEEPING}
    digest = lambda value: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]  # noqa: E731
    parameters = sum(math.prod(shape) for _, _, shape in tensors) if tensors else None
    return {"config": digest(settings), "weights": digest(sorted(tensors) if tensors else sorted(weight_files.items())),
            "layers": config.get("n_layer", config.get("num_hidden_layers")),
            "hidden_size": config.get("hidden_size", config.get("n_embed")), "parameters": parameters}


def same_model(a: dict, b: dict) -> bool:
    return (a["config"], a["weights"]) == (b["config"], b["weights"])


def describe(identity: dict) -> str:
    """'24 layers, hidden 1024, 559.2M parameters (config 1a2b.., weights 3c4d..)'."""
    parameters = identity.get("parameters")
    size = f", {parameters / 1e6:.1f}M parameters" if parameters else ""
    return (f"{identity.get('layers')} layers, hidden {identity.get('hidden_size')}{size} "
            f"(config {identity['config']}, weights {identity['weights']})")


def _read_config(folder: Path, shown: str) -> dict:
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise OptionError(f"{shown}: cannot read {config}: {exc}") from None
    if not isinstance(data, dict):
        raise OptionError(f"{shown}: {config} is not a model configuration (a JSON object with model_type 'bloom')")
    return data


def _weights(folder: Path, shown: str) -> tuple[list, dict]:
    """([(tensor, dtype, shape)], {file: bytes}) of the checkpoint's weights, each file checked whole."""
    for index_name, single in ((SAFETENSORS_INDEX, SAFETENSORS), (BIN_INDEX, BIN)):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                names = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise OptionError(f"{shown}: {index} is not a weight index (a JSON object with a weight_map): "
                                  f"{exc!r}") from None
            missing = [name for name in names if not (folder / name).is_file()]
            if missing:
                raise OptionError(f"{shown}: {index} names {len(names)} weight file(s), and {len(missing)} are not "
                                  f"in {folder} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                                  "copy them too (a download or copy cut short?)")
            break
        if (folder / single).is_file():
            names = [single]
            break
    else:
        raise OptionError(f"{shown}: {folder} holds no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} with its shards, "
                          f"or {BIN}); give a complete checkpoint folder")
    tensors, sizes = [], {}
    for name in names:
        path = folder / name
        sizes[name] = path.stat().st_size
        if name.endswith(".safetensors"):
            tensors += _safetensors_tensors(path, shown)
        elif not zipfile.is_zipfile(path):  # torch.save's format is a zip; a cut one has no directory at its end
            raise OptionError(f"{shown}: {path} is not a whole PyTorch weight file (cut short?); copy it again")
    return tensors, sizes


def _safetensors_tensors(path: Path, shown: str) -> list[tuple[str, str, list[int]]]:
    """The tensors a safetensors file's header lists, after checking the file holds all their bytes."""
    size = path.stat().st_size
    problem = None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
            if length is None or length > size - 8:
                problem = "too short for its own header"
            else:
                header = json.loads(f.read(length))
                ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
                needed = 8 + length + max(ends, default=0)
                if needed > size:
                    problem = f"{size} bytes, its header needs {needed} ({size / needed:.0%} there)"
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        problem = f"its header cannot be read ({exc!r})"
    if problem:
        raise OptionError(f"{shown}: {path} is not a whole safetensors file: {problem}; copy it again "
                          "(a download or copy cut short?)")
    return [(name, t["dtype"], list(t["shape"])) for name, t in header.items() if name != "__metadata__"]
