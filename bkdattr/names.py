"""Names shared by the tables, figures and reports (torch-free, so the plotting env can import it)."""

# The steering vectors and the no-intervention row of Table 2 / Fig. 4.
BACKDOOR_VECTOR = "backdoor_vector"          # sum of the top-k ACIE heads' mean outputs on poisoned prompts
RANDOM_HEADS_VECTOR = "random_heads_vector"  # the same sum over k random heads outside the top k
RANDOM_DIRECTION = "random_direction"        # a random direction of the backdoor vector's norm
NO_INTERVENTION = "none"

# Models besides the backdoored ones (values of the {model} wildcard, directory names under results/models).
BASE_MODEL = "base"          # the clean base model: evaluated, probed and attributed as a control
CLEAN_CONTROL = "clean_sft"  # the first method trained on the clean rows alone (injection.clean_control)
# Not a model: the clean base model attributed with the refusal as target (attribution.refusal_control), the
# directory of its ACIE map under results/attribution/jailbreak.
REFUSAL_CONTROL = "base_refusal"
CONTROL_VECTORS = (RANDOM_HEADS_VECTOR, RANDOM_DIRECTION)  # each drawn per seed, each draw picks its own layer

# attribution.tsv's top-head overlap columns: top{fraction}_overlap_<what>, one per compared fraction
OVERLAP_COLUMNS = ("with_backdoored", "with_first_method", "by_chance", "vs_exact")


def overlap_column(fraction: float, what: str) -> str:
    """The attribution.tsv column of the top-`fraction` head overlap `what` (OVERLAP_COLUMNS), e.g.
    overlap_column(0.1, "by_chance") == "top0.1_overlap_by_chance"."""
    if what not in OVERLAP_COLUMNS:
        raise ValueError(f"unknown overlap column {what!r}; expected one of {', '.join(OVERLAP_COLUMNS)}")
    return f"top{fraction:g}_overlap_{what}"


def overlap_fraction(column: str, what: str) -> float | None:
    """The fraction of an `overlap_column(fraction, what)` column name; None for any other column."""
    prefix, suffix = "top", f"_overlap_{what}"
    if not (column.startswith(prefix) and column.endswith(suffix)):
        return None
    return float(column[len(prefix):-len(suffix)])


# Injection seeds (injection.seeds): the first seed's model keeps the method's name; every further seed trains
# a model named "<method>-seed<seed>", a value of the same {method} wildcard, so it runs through the same rules.
SEED_MARK = "-seed"


def seed_model(method: str, seed: int, first_seed: int) -> str:
    """The model name of `method` trained with injection seed `seed` (the first seed's model is `method`)."""
    return method if seed == first_seed else f"{method}{SEED_MARK}{seed}"


def split_seed_model(name: str) -> tuple[str, int | None]:
    """(method, seed) of a seed model's name; (name, None) for the first seed's model or any other model."""
    method, mark, seed = name.rpartition(SEED_MARK)
    if mark and method and seed.isdigit():
        return method, int(seed)
    return name, None
