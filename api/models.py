"""Request and response models of the HTTP API (what the OpenAPI schema shows)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag, field_validator,
                      model_validator)

from behavior.features import PROFILE_NAMES

# ---------------------------------------------------------------- request text and numbers

# Request bodies are strict: JSON true is not the number 1, nor "5" the number 5.
STRICT = ConfigDict(extra="forbid", strict=True)


def surrogate_error(text: str) -> str | None:
    """Why `text` is not Unicode text (a lone UTF-16 surrogate, which JSON can escape as \\ud800 but
    UTF-8, DuckDB and the bundle cannot hold), or None if it is."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone UTF-16 surrogate at character {exc.start}; send valid Unicode text"
    return None


def _unicode(text: str) -> str:
    if (why := surrogate_error(text)) is not None:
        raise ValueError(why)
    return text


Text = Annotated[str, AfterValidator(_unicode)]


def _current_name(name: str) -> str:
    """A profile field renamed in this release, by its current name (the old one is accepted,
    deprecated, for one release)."""
    return PROFILE_NAMES.get(name, name)


_RENAMED = ", ".join(f"{old!r} (now {new!r})" for old, new in PROFILE_NAMES.items())
# a field name of a query: the old names of renamed fields still work, deprecated
FieldName = Annotated[Text, AfterValidator(_current_name)]


def _json_text(value: Any, where: str = "") -> None:
    """Raises ValueError naming the first string of a JSON value (keys included) that is not Unicode text."""
    if isinstance(value, str):
        if (why := surrogate_error(value)) is not None:
            raise ValueError(f"{where} {why}".strip())
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_text(v, f"item {i}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _json_text(k, "a key")
            _json_text(v, f"key {k!r}")

# ---------------------------------------------------------------- health and model

class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """A bundle is served. Which one is for callers with a key (GET /v1/model): an unauthenticated
    probe learns nothing about the deployment."""

    status: Literal["ready"] = "ready"


class LoyaltyInfo(BaseModel):
    model: str | None = Field(None, description="The BTYD model behind p_alive and expected_purchases: \"bgnbd\" "
                                                "or \"mbgnbd\", chosen on the holdout unless the run's config "
                                                "forced one (report `loyalty.selection`).")
    bgnbd: dict[str, float] | None = Field(None, description="Parameters r, alpha, a, b (per day) of that model, "
                                                             "to 4 significant digits.")
    gamma_gamma: dict[str, float] | None = Field(None, description="Gamma-Gamma parameters p, q, v, to 4 significant "
                                                                   "digits.")
    log_likelihood: float | None = None
    holdout_error_pct: float | None = None


class RecommendInfo(BaseModel):
    selected: str | None = None
    k: int | None = None
    metrics: dict[str, int | float] | None = Field(
        None, description="Test metrics of the selected model (precision@k ... to 4 decimals; users and configs are "
                          "counts; fit_seconds to 3 decimals).")


class ModelInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "bundle_version": "20260101T000000Z-8e3680", "as_of": "2026-01-01T00:00:00Z",
        "created_at": "2026-01-01T02:00:00Z", "loaded_at": "2026-01-01T02:00:05Z", "code_version": "0.1.0",
        "profiles": 60000, "recommender": False,
        "profile_fields": {"user_id": "string", "segment": "string", "clv": "number", "last_purchase_at": "timestamp"},
        "loyalty": {"model": "bgnbd", "bgnbd": {"r": 0.91, "alpha": 41.9, "a": 0.9, "b": 14.4},
                    "gamma_gamma": {"p": 7.5, "q": 3.7, "v": 11.9}, "log_likelihood": -92701.9,
                    "holdout_error_pct": -1.8},
        "recommend": None, "segments": {"Champions": 825, "Lost": 232}}]})

    bundle_version: str
    as_of: str
    created_at: str
    loaded_at: str
    code_version: str | None = None
    profiles: int = Field(description="Profiles served (after any erasure).")
    recommender: bool = Field(description="Whether the bundle has a recommender.")
    profile_fields: dict[str, Literal["integer", "number", "string", "boolean", "timestamp"]] = Field(
        default_factory=dict, description="The profile fields segment queries may filter, sort and return, "
                                          "with their kinds.")
    loyalty: LoyaltyInfo | None = None
    churn: dict[str, int | float] | None = Field(None, description="Churn test metrics (roc_auc, pr_auc, brier, "
                                                 "lift_at_10pct, to 4 decimals) and the test customers `n` (a count).")
    recommend: RecommendInfo | None = None
    segments: dict[str, int] | None = Field(None, description="Users per segment in the run report.")


# ---------------------------------------------------------------- profiles

class LiveSince(BaseModel):
    since: str = Field(description="The bundle's as_of (ISO 8601, UTC): the live payments are those it does not hold.")
    payments: int = Field(description="Successful payments notified since.")
    lines: int = Field(description="Payment lines notified since (any status).")
    net_spend: float = Field(description="Their amounts, refunds negative.")
    last_paid_at: str = Field(description="ISO 8601, UTC")
    items: list[str] = Field(description="Items bought since (folded into the recommendations).")


class Profile(BaseModel):
    """One user's profile. Timestamps are ISO 8601 in UTC; absent values are null. Columns that
    later stages add to the bundle appear as further properties. Numbers are rounded for reading:
    money and scores (loyalty_score, expected_purchases) and days to 2 decimals, probabilities,
    shares and rates to 4."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "user_id": "u0000001", "segment": "Champions", "loyalty_score": 90.1, "loyalty_tier": "Platinum",
        "p_alive": 0.96, "expected_purchases": 2.27, "expected_spend": 20.38, "clv": 163.4,
        "r_score": 5, "f_score": 5, "m_score": 5, "rfm": "555", "frequency": 20, "recency_days": 14.96,
        "net_spend": 411.32, "top_category": "restaurants", "top_channel": "wap", "marketing_opt_out": False,
        "first_purchase_at": "2024-01-01T04:22:29.855487Z", "last_purchase_at": "2025-12-17T01:02:45.520837Z",
        "signup_at": "2024-01-01T04:22:29.855487Z"}]})

    user_id: str = Field(description="The customer's id, as in the payments.")
    segment: str | None = Field(None, description="Named RFM segment (Champions, Loyal, ..., Lost): the cell of the "
                                "user's recency score R and frequency/spend score FM on the segment grid; see "
                                "docs/stages.md.")
    loyalty_score: float | None = Field(None, description="Loyalty score, 0-100: a weighted mean of "
                                        "percentiles of recency, payments, net spend and tenure, P(alive) and "
                                        "expected purchases, times 100.")
    loyalty_tier: str | None = Field(None, description="Tier of the loyalty score: Bronze [0, 40), Silver [40, 60), "
                                     "Gold [60, 80), Platinum [80, 100].")
    p_alive: float | None = Field(None, description="Probability, 0-1, that the customer is still a "
                                  "customer (has not dropped out for good) at the bundle's as_of, from the BTYD "
                                  "model the loyalty stage chose on the holdout (report `loyalty.model`: BG/NBD or "
                                  "MBG/NBD) given frequency, recency and T. Under BG/NBD a customer without repeat "
                                  "purchases is alive by assumption (1.0); read expected_purchases for them.")
    expected_purchases: float | None = Field(None, description="Expected purchase days in the next "
                                             "`loyalty.horizons_days.expected_purchases` days (90 by default) after "
                                             "as_of, from the same BTYD model: P(alive) times the purchase rate "
                                             "the history implies.")
    expected_spend: float | None = Field(None, description="Expected spend per future purchase, in the "
                                         "lake's currency: Gamma-Gamma's mean of the customer's repeat-purchase "
                                         "spend shrunk towards the population mean (the population mean for "
                                         "one-time buyers).")
    clv: float | None = Field(None, description="Customer lifetime value, in the lake's currency: expected "
                              "spend over the next `loyalty.horizons_days.clv` days (365 by default), the "
                              "expected purchases of each 30-day step times expected_spend, discounted at the "
                              "report's `loyalty.discount_rate_annual`.")
    spend_fallback: bool | None = Field(None, description="expected_spend and clv use the population mean spend: "
                                        "the spend model cannot score this repeat customer (a zero, negative or "
                                        "missing mean spend)")
    churn_probability: float | None = Field(None, description="Probability, 0-1, of no successful "
                                            "payment in the next `churn.horizon_days` days after as_of (the run "
                                            "report's: read from the customers' rhythm unless configured), from "
                                            "the calibrated churn classifier (its inputs include P(alive) and "
                                            "expected purchases of the same BTYD model).")
    churn_reasons: str | None = Field(None, description="Why the churn probability is high, in words, most "
                                      "important first (\"; \"-separated, empty when none): features on their "
                                      "risky side whose healthy value would lower the probability most. A reason "
                                      "that quotes P(still active) or expected purchases quotes p_alive and "
                                      "expected_purchases of this profile.")
    r_score: int | None = Field(None, description="Recency score, 1-5 (5 = most recent): quintile of "
                                "recency_days among all customers.")
    f_score: int | None = Field(None, description="Frequency score, 1-5 (5 = most payments): quintile "
                                "of n_payments.")
    m_score: int | None = Field(None, description="Monetary score, 1-5 (5 = most spend): quintile of "
                                "net_spend; null when the lake has no amounts.")
    rfm: str | None = Field(None, description="The three scores as digits R, F, M, e.g. \"545\" (\"-\" for a "
                            "missing M).")
    frequency: int | None = Field(None, description="Repeat purchase days: distinct days with a successful "
                                  "payment, minus one (0 for a one-time buyer); the BTYD models' frequency.")
    purchase_span_days: float | None = Field(
        None, description="BTYD recency, in days: from the first to the last purchase day (0 for a one-time "
        "buyer), NOT the time since the last purchase (that is recency_days); an input of the BTYD models with "
        "frequency and T.")
    recency: float | None = Field(None, deprecated=True, description="Deprecated alias of purchase_span_days (the "
                                  "same value), served for one release; read purchase_span_days.")
    recency_days: float | None = Field(None, description="Days since the last successful payment, up to "
                                       "as_of (the R of RFM).")
    tenure_days: float | None = Field(None, description="Days since the first successful payment, up to "
                                      "as_of.")
    n_payments: int | None = Field(None, description="Successful payments before as_of.")
    total_spend: float | None = Field(None, description="Sum of the successful payment lines' amounts, in the "
                                      "lake's currency; null when the lake has no amounts.")
    net_spend: float | None = Field(None, description="total_spend minus refunds, in the lake's currency.")
    monetary_value: float | None = Field(None, description="Mean spend per repeat purchase day (every purchase day "
                                         "but the first), in the lake's currency: the spend model's input; null "
                                         "for a one-time buyer.")
    T: float | None = Field(None, description="BTYD age, in days: from the first purchase day to as_of's day; an "
                            "input of the BTYD models with frequency and recency.")
    n_lines: int | None = Field(None, description="Successful payment lines (an order of three items is three lines).")
    n_items: int | None = Field(None, description="Distinct items bought.")
    n_categories: int | None = Field(None, description="Distinct categories bought.")
    n_merchants: int | None = Field(None, description="Distinct merchants paid.")
    refund_amount: float | None = Field(None, description="Refunded amount (positive), in the lake's currency.")
    avg_payment_value: float | None = Field(None, description="total_spend / n_payments, in the lake's currency.")
    spend_30d: float | None = Field(None, description="Successful spend in the 30 days before as_of, in the lake's "
                                    "currency.")
    spend_90d: float | None = Field(None, description="Successful spend in the 90 days before as_of.")
    spend_prev_90d: float | None = Field(None, description="Successful spend in the 90 days before those (180 to 90 "
                                         "days before as_of).")
    spend_trend: float | None = Field(None, description="Damped relative change of spend, (spend_90d - "
                                      "spend_prev_90d) / (spend_prev_90d + 1): above 0 growing, -1 to 0 falling.")
    n_payments_30d: int | None = Field(None, description="Successful payments in the 30 days before as_of.")
    n_payments_90d: int | None = Field(None, description="Successful payments in the 90 days before as_of.")
    mean_gap_days: float | None = Field(None, description="Mean days between consecutive purchase days (recency / "
                                        "frequency); null with fewer than 2 purchase days.")
    std_gap_days: float | None = Field(None, description="Standard deviation of those gaps, in days; null with fewer "
                                       "than 3 purchase days.")
    max_gap_days: float | None = Field(None, description="Longest gap between consecutive purchase days, in days.")
    top_category: str | None = Field(None, description="The category with the most successful lines.")
    top_category_share: float | None = Field(None, description="Share, 0-1, of the lines in top_category.")
    share_app: float | None = Field(None, description="Share, 0-1, of successful payments made in the app.")
    share_web: float | None = Field(None, description="Share, 0-1, of successful payments made on the web site.")
    share_wap: float | None = Field(None, description="Share, 0-1, of successful payments made on the mobile site.")
    share_qr: float | None = Field(None, description="Share, 0-1, of successful payments made by scanning a QR code.")
    share_pos: float | None = Field(None, description="Share, 0-1, of successful payments made at a point of sale.")
    share_other: float | None = Field(None, description="Share, 0-1, of successful payments on another or unknown "
                                      "channel (the six shares sum to 1).")
    top_channel: str | None = Field(None, description="The channel (app, web, wap, qr, pos, other) with the most "
                                    "successful payments.")
    n_failed: int | None = Field(None, description="Payments with a failed line.")
    failure_rate: float | None = Field(None, description="n_failed / (n_failed + n_payments), 0-1.")
    n_refunds: int | None = Field(None, description="Refund lines.")
    refund_rate: float | None = Field(None, description="n_refunds / n_lines (by lines; above 1 when a purchase is "
                                      "refunded in several lines).")
    n_promotions_redeemed: int | None = Field(None, description="Distinct promotions redeemed on successful lines.")
    promo_share: float | None = Field(None, description="Share, 0-1, of successful payments with a promotion.")
    marketing_opt_out: bool | None = Field(None, description="The user opted out of marketing: never in target "
                                           "lists.")
    first_purchase_at: str | None = Field(None, description="First successful payment; ISO 8601, UTC")
    last_purchase_at: str | None = Field(None, description="Last successful payment before as_of; ISO 8601, UTC")
    signup_at: str | None = Field(None, description="Sign-up time from the users table; ISO 8601, UTC")
    live_since: LiveSince | None = Field(None, description="Payments notified since the bundle's as_of, already "
                                         "counted in the fields above; null when there are none.")


# ---------------------------------------------------------------- segments

class SegmentSummary(BaseModel):
    segment: str | None
    users: int = Field(description="All users of the segment, opted-out users included.")
    opted_out: int = Field(description="Users of the segment who opted out of marketing.")
    mean_loyalty_score: float | None
    mean_clv: float | None
    mean_p_alive: float | None


class Segments(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "bundle_version": "20260101T000000Z-8e3680", "users": 3000,
        "segments": [{"segment": "Champions", "users": 825, "opted_out": 41, "mean_loyalty_score": 84.2,
                      "mean_clv": 310.5, "mean_p_alive": 0.93}]}]})

    bundle_version: str
    users: int
    segments: list[SegmentSummary]


Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "between", "is_null"]

_VALUE_DOC = ("A JSON value of the field's type: a number, string, boolean, or an ISO 8601 date-time for "
              "timestamps; a list for `in`; [low, high] (inclusive) for `between`; true (null) or false "
              "(not null) for `is_null`.")


class Condition(BaseModel):
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [
        {"field": "segment", "op": "eq", "value": "Champions"},
        {"field": "clv", "op": "between", "value": [100, 500]}]})

    field: FieldName = Field(min_length=1, max_length=100,
                             description=f"A profile field (see GET /v1/model for the bundle). Deprecated names, "
                                         f"still accepted for one release: {_RENAMED}.")
    op: Op
    value: JsonValue = Field(None, description=_VALUE_DOC)

    @field_validator("value")
    @classmethod
    def _unicode_value(cls, v: JsonValue) -> JsonValue:
        _json_text(v)
        return v


class Group(BaseModel):
    """A nested group of conditions: all of them (AND) and/or any of them (OR)."""

    model_config = ConfigDict(**STRICT, populate_by_name=True)

    all_: list[Condition] | None = Field(None, alias="all", max_length=50)
    any_: list[Condition] | None = Field(None, alias="any", max_length=50)


def _member(v: Any) -> str | None:
    if isinstance(v, dict):
        return "group" if ("all" in v or "any" in v) and "field" not in v else "condition"
    if isinstance(v, Group):
        return "group"
    if isinstance(v, Condition):
        return "condition"
    return None


FilterItem = Annotated[Union[Annotated[Condition, Tag("condition")], Annotated[Group, Tag("group")]],
                       Discriminator(_member)]


class Filter(BaseModel):
    """Rows must pass every condition of `all` and at least one of `any` (when given)."""

    model_config = ConfigDict(**STRICT, populate_by_name=True)

    all_: list[FilterItem] | None = Field(None, alias="all", max_length=50)
    any_: list[FilterItem] | None = Field(None, alias="any", max_length=50)


class SortKey(BaseModel):
    model_config = STRICT

    field: FieldName = Field(min_length=1, max_length=100,
                             description=f"A profile field. Deprecated names, still accepted for one release: "
                                         f"{_RENAMED}.")
    desc: bool = False


MAX_JSON_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 2**63 - 1  # the largest LIMIT DuckDB takes


class SegmentQuery(BaseModel):
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [{
        "filter": {"all": [{"field": "segment", "op": "in", "value": ["Champions", "Loyal"]},
                           {"field": "p_alive", "op": "ge", "value": 0.5},
                           {"any": [{"field": "top_category", "op": "eq", "value": "restaurants"},
                                    {"field": "clv", "op": "gt", "value": 300}]}]},
        "sort": [{"field": "clv", "desc": True}], "limit": 100,
        "fields": ["user_id", "segment", "clv", "p_alive", "loyalty_tier"]}]})

    filter: Filter = Field(default_factory=Filter)
    sort: list[SortKey] = Field(default_factory=list, max_length=5,
                                description="Sort keys; user_id is always the last tiebreak. Nulls sort last.")
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT, description=f"Rows per page for JSON (default {DEFAULT_LIMIT}, at most "
                              f"{MAX_JSON_LIMIT}); for CSV, the most rows to export (default: all).")
    cursor: Text | None = Field(None, max_length=4096, description="`next_cursor` of the previous page.")
    fields: list[FieldName] | None = Field(None, max_length=100, description="Fields to return; user_id is always "
                                           f"included. Deprecated names, still accepted for one release: {_RENAMED}.")


class QueryResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "bundle_version": "20260101T000000Z-8e3680", "total": 1234, "count": 2,
        "fields": ["user_id", "segment", "clv"],
        "rows": [{"user_id": "u0000042", "segment": "Champions", "clv": 812.5},
                 {"user_id": "u0000007", "segment": "Loyal", "clv": 640.1}],
        "next_cursor": "eyJ2IjoiMjAyNjAxMDFUMDAwMDAwWi04ZTM2ODAiLCJxIjoiLi4uIiwiayI6WzY0MC4xLCJ1MDAwMDAwNyJdfQ"}]})

    bundle_version: str
    total: int = Field(description="Rows matching the filter, over all pages; opted-out users are never counted.")
    count: int = Field(description="Rows on this page.")
    fields: list[str]
    rows: list[dict[str, str | int | float | bool | None]]
    next_cursor: str | None = Field(None, description="Pass it as `cursor` for the next page; null on the last page.")


# ---------------------------------------------------------------- admin

class ReloadResult(BaseModel):
    changed: bool
    bundle_version: str
    previous_version: str | None


class ErasureResult(BaseModel):
    user_id: str
    erased: bool = True
    bundle_version: str
    notice: str | None = Field(None, description=(
        "Set when the id holds a control character (U+0000-U+001F or U+007F): ingest never stores such an "
        "id (it quarantines the row as bad_user_id), so only the quarantine can hold it; names the id the "
        "user most likely has, to erase instead. The words of `behavior forget`."))


# ---------------------------------------------------------------- recommendations

_MODEL_VERSION_DOC = ("Deprecated alias of bundle_version (the same value), served for one release; read "
                      "bundle_version.")


class ScoredItem(BaseModel):
    item_id: str
    score: float
    name: str | None = Field(None, description="The item's name, where the items table has one.")
    category: str | None = Field(None, description="The item's category (null when unknown).")
    merchant_id: str | None = Field(None, description="The merchant selling the item (null when unknown).")
    price: float | None = Field(None, description="The item's list price from the items table (null when unknown).")


class Recommendations(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "u0000001", "bundle_version": "20260101T000000Z-8e3680",
        "model_version": "20260101T000000Z-8e3680", "recommendation_id": "3f1c2a9e-6a43-4a59-9d55-0c7f3d1b2e10", "source": "model",
        "items": [{"item_id": "i00042", "score": 0.83, "name": None, "category": "groceries", "merchant_id": "m0012",
                   "price": 24.9},
                  {"item_id": "i00007", "score": 0.61, "name": None, "category": "restaurants", "merchant_id": "m0003",
                   "price": 18.0}]}]})

    user_id: str
    bundle_version: str = Field(description="The bundle version that produced the list.")
    model_version: str = Field(deprecated=True, description=_MODEL_VERSION_DOC)
    recommendation_id: str = Field(description="A unique id of this answer (log it with clicks and purchases).")
    source: Literal["model", "fallback"] = Field(
        description="model: personalised; fallback: popular items (in the user's segment when known).")
    items: list[ScoredItem]


class SimilarItems(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "item_id": "i00042", "bundle_version": "20260101T000000Z-8e3680",
        "model_version": "20260101T000000Z-8e3680",
        "recommendation_id": "7d0e8a57-52f4-4bf1-9a8c-4d0f9e1c2b33",
        "items": [{"item_id": "i00043", "score": 0.74}]}]})

    item_id: str
    bundle_version: str = Field(description="The bundle version that produced the list.")
    model_version: str = Field(deprecated=True, description=_MODEL_VERSION_DOC)
    recommendation_id: str
    items: list[ScoredItem]


# ---------------------------------------------------------------- promotions

class PromotionEconomics(BaseModel):
    model_config = STRICT

    value_per_conversion: float = Field(ge=0, le=1e9, description="Value (or margin) of one incremental conversion.")
    coupon_cost: float = Field(0.0, ge=0, le=1e9, description="Cost per redemption.")
    contact_cost: float = Field(0.0, ge=0, le=1e9, description="Cost per contacted user.")


class Budget(BaseModel):
    model_config = STRICT

    users: int | None = Field(None, gt=0, le=10_000_000, description="Most users to contact.")
    money: float | None = Field(None, gt=0, le=1e12, description="Most expected spend: contact cost plus coupon cost "
                                "x P(redeem) per contacted user.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Budget":
        if (self.users is None) == (self.money is None):
            raise ValueError("give exactly one of users or money")
        return self


class TargetRequest(BaseModel):
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [{
        "target": "bakery", "economics": {"value_per_conversion": 20.0, "coupon_cost": 3.0, "contact_cost": 0.1},
        "budget": {"users": 1000}, "holdout_share": 0.1, "exclude_contacted_days": 30}]})

    target: Text = Field("any", min_length=1, max_length=200,
                        description="'any', a category, or 'item:<item_id>' (scored by the item's category).")
    economics: PromotionEconomics
    budget: Budget
    holdout_share: float = Field(0.1, ge=0, lt=1, description="Share of eligible users held back at random for "
                                 "measurement; the holdout list holds those who would have been targeted.")
    exclude_contacted_days: int = Field(30, ge=0, le=3650, description="Skip users offered a promotion in this many "
                                        "days before the bundle's as_of.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the random holdout (same seed, same list).")
    promotion_id: Text | None = Field(None, max_length=200, description="A label for the audit log.")


class TargetUser(BaseModel):
    rank: int
    user_id: str
    score: float = Field(description="What the list is ranked by: expected profit, or the fallback rule's score.")
    expected_profit: float | None = None
    uplift: float | None = None
    p_redeem: float | None = None


class ExpectedValue(BaseModel):
    incremental_conversions: float | None = Field(description="Null for the fallback rule (not estimable).")
    incremental_profit: float | None
    cost: float = Field(description="Expected contact and coupon cost of the targeted users.")


class TargetListResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "list_id": "5b0c1f2e-8c7e-4c4f-9a51-1f3e9d2b7a60", "bundle_version": "20260101T000000Z-8e3680",
        "target": "bakery", "method": "uplift model", "notes": [],
        "counts": {"customers": 60000, "opted_out": 3000, "recently_contacted": 0, "candidates": 57000,
                   "non_positive": 41000, "targets": 1000, "holdout": 112},
        "expected": {"incremental_conversions": 212.4, "incremental_profit": 3105.2, "cost": 820.5},
        "targets": [{"rank": 1, "user_id": "u0000042", "score": 7.9, "expected_profit": 7.9, "uplift": 0.45,
                     "p_redeem": 0.3}],
        "holdout": [{"rank": 4, "user_id": "u0000113", "score": 7.1, "expected_profit": 7.1, "uplift": 0.41,
                     "p_redeem": 0.28}]}]})

    list_id: str
    bundle_version: str
    target: str
    method: Literal["uplift model", "fallback rule"]
    notes: list[str]
    counts: dict[str, int]
    expected: ExpectedValue
    targets: list[TargetUser]
    holdout: list[TargetUser] = Field(description="Would-be targets held back at random: do not contact them; "
                                      "compare their conversion with the targets' to measure the list.")


class Effectiveness(BaseModel):
    """A past promotion's effect, by assignment (treatment vs control), from the run report."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "promotion_id": "promo002", "bundle_version": "20260101T000000Z-8e3680", "status": "estimated",
        "name": "Bakery coupon 2025-03", "target": "bakery", "n_treatment": 3000, "n_control": 3000,
        "conversion": {"treatment": 0.31, "control": 0.25, "lift": 0.06, "lift_ci": [0.037, 0.083],
                       "relative_lift": 0.24, "relative_lift_ci": [0.14, 0.34], "p_value": 1e-6},
        "incremental": {"conversions": 180.0, "revenue": 2100.5, "redemptions": 930, "promotion_cost": 2790.0,
                        "net_revenue": -689.5}}]})

    promotion_id: str
    bundle_version: str
    status: Literal["estimated", "cannot be estimated", "running"]
    reason: str | None = Field(None, description="Why the effect is not estimated (no control group, ...).")
    name: str | None = None
    target: str | None = None
    n_treatment: int | None = None
    n_control: int | None = None
    conversion: dict[str, JsonValue] | None = None
    revenue_per_user: dict[str, JsonValue] | None = None
    cuped: dict[str, JsonValue] | None = None
    incremental: dict[str, JsonValue] | None = None
    segments: dict[str, JsonValue] | None = None


# ---------------------------------------------------------------- merchants

class MerchantProfile(BaseModel):
    """One merchant's profile as of the bundle: activity over 30/90/365 days and its trends,
    loyalty of its customers, share of wallet, reliability, segment and churn risk. Timestamps
    are ISO 8601 in UTC; absent values are null. Further profile columns appear as properties."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "merchant_id": "m00017", "merchant_segment": "at_risk", "churn_risk": 0.83,
        "reasons": ["payments down 76% vs the previous 90 days", "no payment for 21 days"],
        "customers": 812, "payments_90d": 140, "payments_trend_90d": -0.76, "revenue_90d": 3120.5,
        "share_of_wallet": 0.41, "repeat_customer_rate": 0.55, "failure_rate": 0.02}]})

    merchant_id: str
    merchant_segment: str | None = Field(None, description="growing, steady, declining, at_risk, new or dormant.")
    churn_risk: float | None = Field(None, description="P(payments in the next 90 days < half of the last 90); "
                                                       "null for merchants with too few payments to score.")
    reasons: list[str] = Field(default_factory=list, description="Why the churn risk is high, in words "
                                                                 "(empty when it is not high).")


class AudienceMember(BaseModel):
    user_id: str
    purchase_days: int | None = None
    payments: int | None = None
    revenue: float | None = None
    last_payment_at: str | None = Field(None, description="ISO 8601, UTC")
    days_since: float | None = Field(None, description="Days from the last payment at the merchant to as_of.")


class MerchantAudience(BaseModel):
    bundle_version: str
    merchant_id: str
    segment: str = Field(description="loyal, at_risk or lapsed (customers of this merchant).")
    count: int
    customers: list[AudienceMember] = Field(description="Most purchase days first; opted-out and erased users "
                                                        "never appear.")
