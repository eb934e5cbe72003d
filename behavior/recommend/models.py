"""Every recommender behind the one contract of `behavior.recommend.base.Recommender`.

`Recommender.from_arrays(arrays)` rebuilds any of them from its `to_arrays()` output;
`from_params(params)` makes a new, unfitted one from its `get_params()` output.
"""

from behavior.recommend.base import REGISTRY, Recommender, from_params
from behavior.recommend.baselines import BuyAgain, Popularity
from behavior.recommend.blend import Blend
from behavior.recommend.ease import EASE
from behavior.recommend.factors import ALS, BPR, FactorModel, SparkALS
from behavior.recommend.neighbours import ItemKNN

__all__ = ["ALS", "BPR", "Blend", "BuyAgain", "EASE", "FactorModel", "ItemKNN", "Popularity", "REGISTRY", "Recommender",
           "SparkALS", "from_params"]
