"""The run's configuration, as the batch side imports it: the one configuration of the product
lives in `behavior.store.config` (shared with the API), where every key is declared once with
its default, its TOML key and its environment variable; docs/configuration.md lists them.

```toml
[engine]
name = "duckdb"
[loyalty]
model = "mbgnbd"
[churn]
horizon_days = 60
```
"""

from behavior.store.config import (
    ApiConfig,
    ChurnConfig,
    Config,
    ConfigError,
    EngineConfig,
    HomeConfig,
    LoyaltyConfig,
    PromotionsConfig,
    RecommendConfig,
    load_config,
)

__all__ = ["ApiConfig", "ChurnConfig", "Config", "ConfigError", "EngineConfig", "HomeConfig", "LoyaltyConfig",
           "PromotionsConfig", "RecommendConfig", "load_config"]
