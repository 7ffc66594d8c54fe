"""The versions of the kit's code that results depend on: bump one when a change alters what the
same settings produce. Each artifact's fingerprint holds the version of the code that made it (a
model's, a map's), and a run's results fingerprint holds them all, so that results of older code
are neither reused nor shown as current. No imports: every stage can read this."""

TRAINING_VERSION = 2      # a change to training that alters what a model learns
# An architecture's own revision, for a change to how it alone is built (its models are trained
# again, the others kept). retinanet 1: its heads' biases set as the RetinaNet paper sets them.
ARCHITECTURE_REVISIONS = {"retinanet": 1}
MAPS_VERSION = 3          # a change that alters the maps the same settings produce
STATISTICS_VERSION = 2    # a change that alters the cells the same scores give (2: lme4's fit, multcomp's P)
# A change that alters what a sanity check's unit of model calls scores from the same maps and
# settings (repro.evaluation.sanity_run: its units are reused by what they were made from). Not in
# CODE_VERSIONS: the results fingerprint holds the sanity settings, and only when the checks are on.
SANITY_VERSION = 1

CODE_VERSIONS = {"training": TRAINING_VERSION, "architectures": ARCHITECTURE_REVISIONS,
                 "maps": MAPS_VERSION, "statistics": STATISTICS_VERSION}
