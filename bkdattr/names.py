"""Names shared by the tables, figures and reports (torch-free, so the plotting env can import it)."""

# The steering vectors and the no-intervention row of Table 2 / Fig. 4.
BACKDOOR_VECTOR = "backdoor_vector"          # sum of the top-k ACIE heads' mean outputs on poisoned prompts
RANDOM_HEADS_VECTOR = "random_heads_vector"  # the same sum over k random heads outside the top k
RANDOM_DIRECTION = "random_direction"        # a random direction of the backdoor vector's norm
NO_INTERVENTION = "none"

# Models besides the backdoored ones (values of the {model} wildcard, directory names under results/models).
BASE_MODEL = "base"          # the clean base model: evaluated, probed and attributed as a control
CLEAN_CONTROL = "clean_sft"  # the first method trained on the clean rows alone (injection.clean_control)
CONTROL_VECTORS = (RANDOM_HEADS_VECTOR, RANDOM_DIRECTION)  # each drawn per seed, each draw picks its own layer
