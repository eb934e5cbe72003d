"""Item recommendation: implicit-feedback collaborative filtering that never loses to popularity.

Pure library code on integer indices of a users x items CSR matrix (no paths, no env):

- `interactions`: `IdMap` (string ids <-> indices), `build_matrix`, `Interactions` (per-pair
  purchases, refunds, days since last purchase) and the element-wise `confidence` schemes;
  `weighting`: the matrix-level `weigh` / fitted `Weighting` (count, log, bm25, recency).
- `models`: one contract (`Recommender`: fit, recommend, similar_items, to_arrays /
  from_arrays) and `ALS`, `BPR`, `ItemKNN`, `Popularity`, `BuyAgain`, `Blend`.
- `evaluate`: precision / recall / nDCG / MAP @k and coverage, textbook definitions.
- `search`: the search space (`default_candidates`) and the budgeted successive halving.
- `select`: `select_model` on a temporal validation split, never worse than its baselines
  (`behavior.model_choice`).
- `serving`: `serving_arrays` (the bundle's `.npz` content) and `ServingModel` (per-user
  recommendations with fallbacks, similar items, fold-in, explanations).
"""

from behavior.recommend.checks import InteractionsError
from behavior.recommend.evaluate import evaluate
from behavior.recommend.interactions import IdMap, Interactions, build_matrix, confidence
from behavior.recommend.models import ALS, BPR, EASE, Blend, BuyAgain, ItemKNN, Popularity, Recommender, from_params
from behavior.recommend.search import default_candidates
from behavior.recommend.select import Selection, select_model
from behavior.recommend.serving import Recommendation, ServingModel, UnknownIdError, serving_arrays
from behavior.recommend.weighting import Weighting, weigh

__all__ = [
    "ALS", "BPR", "Blend", "BuyAgain", "EASE", "IdMap", "Interactions", "InteractionsError", "ItemKNN", "Popularity",
    "Recommendation", "Recommender", "Selection", "ServingModel", "UnknownIdError", "Weighting", "build_matrix",
    "confidence", "default_candidates", "evaluate", "from_params", "select_model", "serving_arrays", "weigh",
]
