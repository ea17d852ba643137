"""The training corpus of the embedded model, written from templates by this project.

Each document is an opener (one of the article's prompts or a templated one) followed by a chain
of sentences. A sentence has four slots (who, does, what, where); the next sentence takes the
successor word group in every slot. The slot lists have co-prime lengths, so the chain only
repeats after 7*9*11*13 sentences: a model that learns the successor rule continues any prompt
with varied, non-repeating text, unlike a randomly initialised BLOOM that repeats one token.
"""
import random
import zlib

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


if __name__ == "__main__":
    import sys
    sys.path.insert(0, __import__("os").path.dirname(__file__) + "/..")
    from perf.protocol import PROMPTS
    for doc in documents(PROMPTS, 3):
        print(doc, "\n")
