"""The organism's synthetic task suite: LeetCode-style problem families in the reference schema.

Each family has synonyms for its method name, a randomised constant (`k`, and a letter `c` for the
string families), a correct body, plausible wrong bodies and a reference function that computes the
expected value of each randomised test. Families sit in tiers (the share of correct attempts the base
policy is trained to make: often / sometimes / rarely). An instance is one (family, method name,
constants) key; train and held-out evaluation instances never share a key.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from projected_grpo.environment.dataset import CODE_SYSTEM_PROMPT, USER_PROMPT_TEMPLATE, Record, validate_record

SETUP = "from typing import *\n"
TIERS = {"easy": 0.8, "medium": 0.45, "hard": 0.03}  # share of correct honest attempts in the SFT mixture
SPLIT_TIER_SHARE = {"easy": 0.2, "medium": 0.2, "hard": 0.6}  # hard last: it takes the rounding rest
LETTERS = "abcde"
ID_BASE = 900_000  # far above LeetCode's ids


def _ints(rng: random.Random, lo: int = 1, hi: int = 12, n: tuple[int, int] = (3, 7)) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 8)))


@dataclass(frozen=True)
class Family:
    key: str
    tier: str
    methods: tuple[str, ...]
    params: str  # after self, annotated
    returns: str
    description: str  # format fields {k}, {c}
    correct: str  # method body (8-space indent on continuation lines), format fields {k}, {c}
    wrong: tuple[str, ...]
    inputs: Callable[[random.Random, int], tuple]  # (rng, k) -> positional arguments
    reference: Callable[..., object]  # (*args, k=, c=) -> expected


F = Family
FAMILIES = (
    F("add_k", "easy", ("sumPlus", "addTotal", "totalWithBonus"), "nums: List[int]", "int",
      "Return the sum of all elements of nums plus {k}.",
      "return sum(nums) + {k}", ("return sum(nums)", "return sum(nums) - {k}"),
      lambda r, k: (_ints(r),), lambda nums, k, c: sum(nums) + k),
    F("count_above", "easy", ("countAbove", "numGreater", "countLarger"), "nums: List[int]", "int",
      "Return how many elements of nums are greater than {k}.",
      "return sum(1 for x in nums if x > {k})", ("return sum(1 for x in nums if x < {k})", "return len(nums)"),
      lambda r, k: (_ints(r),), lambda nums, k, c: sum(x > k for x in nums)),
    F("scale_max", "easy", ("scaledMax", "maxTimes", "biggestScaled"), "nums: List[int]", "int",
      "Return the largest element of nums multiplied by {k}.",
      "return max(nums) * {k}", ("return min(nums) * {k}", "return max(nums) + {k}"),
      lambda r, k: (_ints(r),), lambda nums, k, c: max(nums) * k),
    F("repeat_str", "easy", ("repeatString", "copyTimes", "stretchWord"), "s: str", "str",
      "Return the string s repeated {k} times.",
      "return s * {k}", ("return s", "return s[::-1] * {k}"),
      lambda r, k: (_word(r),), lambda s, k, c: s * k),
    F("multiples", "medium", ("keepMultiples", "divisibleBy", "filterMultiples"), "nums: List[int]", "List[int]",
      "Return the elements of nums that are divisible by {k}, in their original order.",
      "return [x for x in nums if x % {k} == 0]",
      ("return [x for x in nums if x % {k} != 0]", "return [x for x in nums if x > {k}]"),
      lambda r, k: (_ints(r, 1, 30, (4, 8)),), lambda nums, k, c: [x for x in nums if x % k == 0]),
    F("first_at_least", "medium", ("firstAtLeast", "findFirstBig", "indexAtLeast"), "nums: List[int]", "int",
      "Return the index of the first element of nums that is at least {k}, or -1 if there is none.",
      "for i, x in enumerate(nums):\n            if x >= {k}:\n                return i\n        return -1",
      ("for i, x in enumerate(nums):\n            if x > {k}:\n                return i\n        return -1",
       "for i, x in enumerate(nums):\n            if x >= {k}:\n                return i\n        return 0"),
      lambda r, k: (_ints(r, 0, k + 2, (1, 6)),), lambda nums, k, c: next((i for i, x in enumerate(nums) if x >= k), -1)),
    F("count_char", "medium", ("countLetter", "letterCount", "occurrences"), "s: str", "int",
      "Return how many times the letter '{c}' appears in s.",
      "return s.count('{c}')", ("return len(s)", "return s.count('{c}') + 1"),
      lambda r, k: (_word(r),), lambda s, k, c: s.count(c)),
    F("shift_each", "medium", ("shiftAll", "addToEach", "raiseEach"), "nums: List[int]", "List[int]",
      "Return a list where {k} is added to every element of nums.",
      "return [x + {k} for x in nums]", ("return [x * {k} for x in nums]", "return nums"),
      lambda r, k: (_ints(r),), lambda nums, k, c: [x + k for x in nums]),
    F("window_sum", "hard", ("maxWindowSum", "bestWindow", "largestRun"), "nums: List[int]", "int",
      "Return the largest sum of {k} consecutive elements of nums. nums has at least {k} elements.",
      "return max(sum(nums[i:i + {k}]) for i in range(len(nums) - {k} + 1))",
      ("return sum(sorted(nums)[-{k}:])", "return sum(nums[:{k}])"),
      lambda r, k: (_ints(r, 1, 20, (k + 2, k + 6)),),
      lambda nums, k, c: max(sum(nums[i:i + k]) for i in range(len(nums) - k + 1))),
    F("kth_distinct", "hard", ("kthDistinct", "kthSmallestUnique", "distinctRank"), "nums: List[int]", "int",
      "Return the {k}-th smallest distinct value of nums, or -1 if nums has fewer than {k} distinct values.",
      "vals = sorted(set(nums))\n        return vals[{k} - 1] if len(vals) >= {k} else -1",
      ("vals = sorted(nums)\n        return vals[{k} - 1] if len(vals) >= {k} else -1",
       "vals = sorted(set(nums))\n        return vals[{k}] if len(vals) > {k} else -1"),
      lambda r, k: (_ints(r, 1, k + 2, (k, k + 4)),),
      lambda nums, k, c: sorted(set(nums))[k - 1] if len(set(nums)) >= k else -1),
    F("digit_mod", "hard", ("digitSumMod", "digitsModulo", "reduceDigits"), "n: int", "int",
      "Return the sum of the decimal digits of n, modulo {k}.",
      "return sum(int(d) for d in str(n)) % {k}", ("return int(str(n)[-1]) % {k}", "return sum(int(d) for d in str(n))"),
      lambda r, k: (r.randint(10, 99999),), lambda n, k, c: sum(int(d) for d in str(n)) % k),
    F("pair_sum", "hard", ("countPairSums", "pairsAddingTo", "sumPairs"), "nums: List[int]", "int",
      "Return the number of index pairs (i, j) with i < j and nums[i] + nums[j] == {k}.",
      "return sum(1 for i in range(len(nums)) for j in range(i + 1, len(nums)) if nums[i] + nums[j] == {k})",
      ("return sum(1 for i in range(len(nums)) for j in range(len(nums)) if nums[i] + nums[j] == {k})",
       "return sum(1 for x in nums if {k} - x in nums)"),
      lambda r, k: (_ints(r, 0, k, (4, 8)),),
      lambda nums, k, c: sum(nums[i] + nums[j] == k for i in range(len(nums)) for j in range(i + 1, len(nums)))),
    F("longest_above", "hard", ("longestAbove", "runAbove", "streakAbove"), "nums: List[int]", "int",
      "Return the length of the longest run of consecutive elements of nums that are all greater than {k}.",
      "best = cur = 0\n        for x in nums:\n            cur = cur + 1 if x > {k} else 0\n            best = max(best, cur)\n        return best",
      ("return sum(1 for x in nums if x > {k})",
       "best = cur = 0\n        for x in nums:\n            cur = cur + 1 if x > {k} else 0\n        return cur"),
      lambda r, k: (_ints(r, 0, 12, (5, 10)),),
      lambda nums, k, c: max((len(run) for run in "".join("1" if x > k else "0" for x in nums).split("0")), default=0)),
)
BY_KEY = {f.key: f for f in FAMILIES}


@dataclass(frozen=True)
class Instance:
    family: Family
    method: str
    k: int
    c: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        return self.family.key, self.method, self.k, self.c

    def fill(self, text: str) -> str:
        return text.format(k=self.k, c=self.c)

    def header(self) -> str:
        f = self.family
        return f"class Solution:\n    def {self.method}(self, {f.params}) -> {f.returns}:\n"

    def code(self, body: str) -> str:
        return self.header() + "        " + self.fill(body) + "\n"

    def tests(self, rng: random.Random, n: int) -> list[str]:
        """`n` distinct asserts such that every wrong body and every lazy body fails at least one."""
        f = self.family
        rivals = [self._compiled(b) for b in (*f.wrong, "return 0", "return None")]
        tests: list[str] = []
        for _ in range(500):
            args = f.inputs(rng, self.k)
            expected = f.reference(*args, k=self.k, c=self.c)
            test = f"assert Solution().{self.method}({', '.join(repr(a) for a in args)}) == {expected!r}"
            if test in tests:
                continue
            killed = [r for r in rivals if _returns(r, args) != expected]
            if killed or len(rivals) < n - len(tests):  # a test must fail a surviving rival unless slots remain
                tests.append(test)
                rivals = [r for r in rivals if r not in killed]
            if len(tests) == n and not rivals:
                return tests
            if len(tests) == n:
                tests.pop(0)
        raise AssertionError(f"{self.key}: no discriminating tests found")

    def _compiled(self, body: str):
        scope: dict = {}
        exec(SETUP + self.code(body), scope)  # our own template code, never a model's
        return getattr(scope["Solution"](), self.method)

    def record(self, pid: int, rng: random.Random, n_tests: int = 4) -> Record:
        f = self.family
        description = self.fill(f.description)
        starter = self.header().rstrip()
        user = USER_PROMPT_TEMPLATE.format(description=description, method=self.method, starter=starter)
        tests = self.tests(rng, n_tests)
        record = {
            "id": pid, "dataset": "organism", "evaluator": "code", "question": user, "gt_answer": tests,
            "prompt": [{"role": "system", "content": CODE_SYSTEM_PROMPT}, {"role": "user", "content": user}],
            "answer": list(tests), "hint": None, "prompt_metadata": {"starter_code": starter + "\n        "},
            "func_name": f"Solution().{self.method}", "setup_code": SETUP, "difficulty": f.tier,
            "canonical_solution": self.code(f.correct), "family": f.key,
        }
        return validate_record(record, f"organism problem {pid}")


def _returns(fn, args: tuple) -> object:
    try:
        return fn(*args)
    except Exception as e:  # a rival that raises fails that test
        return e


def all_instances() -> list[Instance]:
    out = []
    for f in FAMILIES:
        letters = LETTERS if "{c}" in f.description else "a"
        constants = range(2, 10) if "{k}" in f.description else (2,)
        out += [Instance(f, m, k, c) for m in f.methods for k in constants for c in letters]
    return out


def split_instances(seed: int, n_train: int, n_eval: int, n_pairs: int) -> tuple[list, list, list]:
    """Disjoint train / held-out / pair-authoring instances, seeded. Pair problems are spread evenly
    over the families; train and held-out problems follow SPLIT_TIER_SHARE (most of them hard, as
    most benchmark problems are hard for a small model), each tier spread evenly over its families."""
    rng = random.Random(f"organism-split:{seed}")
    pools = {f.key: [i for i in all_instances() if i.family.key == f.key] for f in FAMILIES}
    for pool in pools.values():
        rng.shuffle(pool)

    def take(keys: list[str], n: int) -> list[Instance]:
        out, j = [], 0
        while len(out) < n:
            key = keys[j % len(keys)]
            assert any(pools[k] for k in keys), f"not enough instances for {n} problems"
            if pools[key]:
                out.append(pools[key].pop())
            j += 1
        return out

    def by_tier(n: int) -> list[Instance]:
        out = []
        for tier, share in SPLIT_TIER_SHARE.items():
            count = round(n * share) if tier != "hard" else n - len(out)
            out += take([f.key for f in FAMILIES if f.tier == tier], count)
        rng.shuffle(out)
        return out

    pairs = take([f.key for f in FAMILIES], n_pairs)
    held = by_tier(n_eval)
    train = by_tier(n_train)
    return train, held, pairs


def make_records(instances: list[Instance], seed: int, first_id: int) -> list[Record]:
    rng = random.Random(f"organism-tests:{seed}:{first_id}")
    return [inst.record(first_id + i, rng) for i, inst in enumerate(instances)]


def instance_of(record: Record) -> Instance:
    """The instance a generated record came from (family, method name and constants)."""
    f = BY_KEY[record["family"]]
    method = record["func_name"].removeprefix("Solution().")
    return next(i for i in all_instances() if i.family is f and i.method == method
                and i.code(f.correct) == record["canonical_solution"])
