"""Plots for analysts: pure functions of DataFrames and report sections that return a
matplotlib `Figure` (no pyplot, no global state; save with `fig.savefig(path)`).

Every plot has a title, axes labelled with their units, percent axes for rates, and says
"no data: <why>" instead of failing on empty or degenerate input (a run without promotions
or without a churn model). One module per subject: payments, segments, retention,
recommend, promotions, model_choice.
"""

from behavior.plots.model_choice import model_choice_table, model_choice_title, plot_model_choice, served_models
from behavior.plots.payments import (plot_basket_sizes, plot_channel_mix, plot_failure_refund_rates,
                                     plot_monthly_volume, plot_top, plot_weekday_hour)
from behavior.plots.promotions import (lift_table, plot_promotion_lift, plot_qini, plot_targeting_what_if,
                                      selection_table)
from behavior.plots.recommend import (plot_coverage, plot_recommendation_examples, plot_recommender_metrics,
                                      recommendation_examples)
from behavior.plots.retention import (churn_reason_counts, plot_calibration, plot_churn_reasons,
                                      plot_cohort_retention, plot_gain_lift, plot_retention_curves)
from behavior.plots.segments import (plot_loyalty_tiers, plot_merchant_health, plot_merchant_loyalty,
                                     plot_rfm_distribution, plot_segment_migration, plot_segment_sizes,
                                     revenue_at_stake)

__all__ = ["churn_reason_counts", "lift_table", "model_choice_table", "model_choice_title", "plot_basket_sizes",
           "plot_calibration", "plot_channel_mix", "plot_churn_reasons", "plot_cohort_retention", "plot_coverage",
           "plot_failure_refund_rates", "plot_gain_lift", "plot_loyalty_tiers", "plot_merchant_health",
           "plot_merchant_loyalty", "plot_model_choice", "plot_monthly_volume", "plot_promotion_lift", "plot_qini",
           "plot_recommendation_examples", "plot_recommender_metrics", "plot_retention_curves",
           "plot_rfm_distribution", "plot_segment_migration", "plot_segment_sizes", "plot_targeting_what_if",
           "plot_top", "plot_weekday_hour", "recommendation_examples", "revenue_at_stake", "selection_table",
           "served_models"]
