"""Build the embedded default model: a tiny BLOOM trained on templated text.

    python scripts/build_tiny_bloom.py [--out perf/assets/tiny-bloom] [--steps 600]

Trains a byte-level BPE tokenizer (BLOOM's kind, BLOOM's special tokens) and a 3-layer BLOOM on
the corpus, on the CPU in a few minutes, then checks what the suite relies on: greedy
continuations of the article's prompts are not degenerate (>= 20 distinct tokens in 100).
The result is committed; rebuilding is only needed to change it.
"""
import argparse
import json
import random
import sys
import time
import zlib
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.protocol import PROMPTS  # noqa: E402

# -- the corpus ---------------------------------------------------------------------------
# The training corpus of the embedded model, written from templates by this project.
#
# Each document is an opener (one of the article's prompts or a templated one) followed by a chain
# of sentences. A sentence has four slots (who, does, what, where); the next sentence takes the
# successor word group in every slot. The slot lists have co-prime lengths, so the chain only
# repeats after 7*9*11*13 sentences: a model that learns the successor rule continues any prompt
# with varied, non-repeating text, unlike a randomly initialised BLOOM that repeats one token.
WHO = ["the engineer", "a small robot", "my sister", "the old captain", "our team",
       "the teacher", "a young painter"]
DOES = ["builds", "paints", "repairs", "measures", "writes about", "visits", "follows",
        "carries", "draws"]
WHAT = ["a wooden boat", "the red bridge", "seven lamps", "a quiet garden", "the tall tower",
        "an old map", "the silver train", "three green chairs", "a long letter", "the stone wall",
        "a paper kite"]
WHERE = ["near the river", "in the morning", "after the storm", "under the bright moon",
         "before dinner", "at the harbor", "on the hill", "during the festival", "in the city",
         "by the lake", "at noon", "through the forest", "with great care"]

OPENER_SUBJECTS = ["He", "She", "They", "We", "Everyone", "The new student", "My friend"]
OPENER_VERBS = ["is working on", "has a", "got all", "is happy and I can", "wants to see",
                "talks about", "remembers"]


def sentence(state: tuple[int, int, int, int]) -> str:
    a, b, c, d = state
    text = f"{WHO[a % len(WHO)]} {DOES[b % len(DOES)]} {WHAT[c % len(WHAT)]} {WHERE[d % len(WHERE)]}."
    return text[0].upper() + text[1:]


def chain(start: tuple[int, int, int, int], length: int) -> list[str]:
    return [sentence(tuple(s + i for s in start)) for i in range(length)]


def openers(prompts) -> list[str]:
    return list(prompts) + [f"{s} {v}" for s in OPENER_SUBJECTS for v in OPENER_VERBS]


def documents(prompts, count: int, seed: int = 0, sentences: int = 14) -> list[str]:
    rng = random.Random(seed)
    all_openers = openers(prompts)
    docs = []
    for _ in range(count):
        if rng.random() < 0.5:  # mid-chain
            start = tuple(rng.randrange(n) for n in (len(WHO), len(DOES), len(WHAT), len(WHERE)))
            docs.append(" ".join(chain(start, sentences)))
        else:
            # Behind an opener the chain starts at a state fixed by the opener, so that every
            # next token of a prompt's continuation is determined (no near-ties for greedy).
            opener = rng.choice(all_openers)
            start = opener_state(opener)
            docs.append(f"{opener} " + " ".join(chain(start, sentences)))
    return docs


def opener_state(opener: str) -> tuple[int, int, int, int]:
    h = zlib.crc32(opener.encode())
    return (h % 7, h // 7 % 9, h // 63 % 11, h // 693 % 13)


# -- the model ----------------------------------------------------------------------------
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]  # BLOOM's ids 0..3


def build_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """tokenizer.json with merges as "a b" strings: the format tokenizers < 0.20 reads too (the
    ds_fp16 worker runs transformers 4.43.4 with tokenizers 0.19); newer versions read both."""
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "perf/assets/tiny-bloom"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM

    docs = documents(PROMPTS, count=6000, seed=args.seed)
    tok = build_tokenizer(docs, vocab_size=512)
    save_tokenizer(tok, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BloomTokenizerFast", "unk_token": "<unk>", "bos_token": "<s>",
        "eos_token": "</s>", "pad_token": "<pad>", "padding_side": "left",
        "add_prefix_space": False, "model_max_length": 2048}, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}, indent=2) + "\n")

    config = BloomConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, n_layer=3, n_head=4,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = BloomForCausalLM(config)
    ids = [tok.encode(d).ids + [2] for d in docs]
    stream = torch.tensor([i for doc in ids for i in doc])
    seq, batch = 192, 32
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps, pct_start=0.1)
    model.train()
    start = time.time()
    for step in range(args.steps):
        offsets = torch.randint(0, len(stream) - seq - 1, (batch,))
        x = torch.stack([stream[o:o + seq] for o in offsets])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d} loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)
    model.eval()
    model.save_pretrained(out)

    # The check the suite relies on, through from_pretrained like any user.
    tokenizer = AutoTokenizer.from_pretrained(out)
    reloaded = BloomForCausalLM.from_pretrained(out)
    worst = None
    for prompt in PROMPTS:
        enc = tokenizer(prompt, return_tensors="pt")
        gen = reloaded.generate(**enc, max_new_tokens=100, min_new_tokens=100, do_sample=False)
        new = gen[0, enc.input_ids.shape[1]:].tolist()
        distinct = len(set(new))
        worst = distinct if worst is None else min(worst, distinct)
        print(f"{distinct:3d} distinct | {prompt!r} -> {tokenizer.decode(new)[:100]!r}")
    if worst < 20:
        sys.exit(f"degenerate continuations: {worst} distinct tokens (need >= 20)")
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
