"""Which model a run measures: `--model` resolved to what from_pretrained gets and the name
results and baselines use. Plain errors (perf.options.OptionError), shared by the plugin and tools."""
import json
from pathlib import Path

from perf import synthetic
from perf.options import OptionError
from perf.protocol import EMBEDDED_MODEL


def resolve_model(text: str | None) -> tuple[str, str]:
    """(what from_pretrained gets, the model's name), or an OptionError."""
    if text is None:
        return str(EMBEDDED_MODEL), EMBEDDED_MODEL.name
    if text.startswith("synthetic:"):
        try:
            _, _, name = synthetic.parse(text)
        except ValueError as exc:
            raise OptionError(f"--model {text!r}: {exc}") from None
        return text, name  # built at the session's first load (perf/conftest.py)
    path = Path(text).expanduser()
    looks_like_path = path.is_absolute() or text.startswith((".", "~")) or path.exists()
    if looks_like_path or text.count("/") > 1:
        if not path.is_dir():
            raise OptionError(f"--model {text!r}: no such folder; give a folder holding a "
                              "BLOOM checkpoint (config.json, weights, tokenizer) or a cached HF id")
        config = path / "config.json"
        name = path.resolve().name
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(text, "config.json")
        if not isinstance(cached, str):
            raise OptionError(
                f"--model {text!r}: not in the local Hugging Face cache and this suite never "
                f"downloads; run `hf download {text}` where there is network, or give a local folder")
        config, name = Path(cached), text.replace("/", "--")
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise OptionError(f"--model {text!r}: cannot read {config}: {exc}") from None
    if not isinstance(data, dict):
        raise OptionError(f"--model {text!r}: {config} is not a model configuration (a JSON object "
                          "with model_type 'bloom')")
    model_type = data.get("model_type")
    if model_type != "bloom":
        raise OptionError(f"--model {text!r}: {config} says model_type {model_type!r}; "
                          "this suite runs BLOOM checkpoints (model_type 'bloom')")
    # Absolute: workers run in their log folder.
    return (str(path.resolve()) if looks_like_path else text), name
