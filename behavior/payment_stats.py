"""Descriptive statistics of the payments log, as SQL over a payments relation (for the
analyst notebooks and the run's HTML report).

Each function returns the SQL of one query over `payments`, a relation name (a view that is
already point in time, like the runner's) with the canonical columns. Vocabulary as in
`behavior.features`: a *payment* is a (user_id, payment_id) pair; it is *successful* when it
has a `success` line, *failed* when it has a `failed` line (a payment with both counts in
both); refunds are lines with status `refund` (amounts stored negative). Months are UTC
calendar months of `paid_at`. Money is in the lake's reporting currency (DOUBLE after an
exact decimal sum); null when every amount is null (a lake without amounts).
"""

from __future__ import annotations

# The UTC wall time of paid_at from its microseconds since the epoch: the same month as
# `paid_at AT TIME ZONE 'UTC'`, without a time zone conversion per line (3x the cost).
_MONTH = "date_trunc('month', make_timestamp(epoch_us(paid_at)))::DATE"


def _payment_rows(payments: str, where: str = "") -> str:
    """The CTE `pay` of the monthly figures: one row per (month, user_id, payment_id)."""
    return f"""WITH pay AS (
            SELECT {_MONTH} AS month, user_id, payment_id,
                   bool_or(status = 'success') AS ok, bool_or(status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'success') AS lines,
                   count(*) FILTER (WHERE status = 'refund') AS refund_lines,
                   sum(amount) FILTER (WHERE status = 'success') AS sales,
                   sum(abs(amount)) FILTER (WHERE status = 'refund') AS refunds
            FROM {payments} {where} GROUP BY ALL)"""


def monthly_payments_sql(payments: str) -> str:
    """month, payments (successful), customers, lines (successful), sales (sum of successful
    amounts), refunds (sum of |refund amounts|), failed_payments, failure_rate (failed /
    (failed + successful) payments), refund_lines, refund_rate (refund lines / successful
    lines); one row per month with any line, ordered by month."""
    return f"""
        {_payment_rows(payments)}
        SELECT month,
               count(*) FILTER (WHERE ok) AS payments,
               count(DISTINCT user_id) FILTER (WHERE ok) AS customers,
               sum(lines)::BIGINT AS lines,
               sum(sales)::DOUBLE AS sales,
               coalesce(sum(refunds), 0)::DOUBLE AS refunds,
               count(*) FILTER (WHERE failed) AS failed_payments,
               (count(*) FILTER (WHERE failed))
                   / nullif(count(*) FILTER (WHERE failed OR ok), 0)::DOUBLE AS failure_rate,
               sum(refund_lines)::BIGINT AS refund_lines,
               sum(refund_lines) / nullif(sum(lines), 0)::DOUBLE AS refund_rate
        FROM pay GROUP BY month ORDER BY month"""


def monthly_partial_sql(payments: str, as_of_literal: str) -> str:
    """`monthly_payments_sql`'s additive figures of the lines of `payments` before as_of: per
    month the successful payments, customers, lines, sales and refunds (exact decimal sums),
    failed payments, settled (failed or successful) payments and refund lines. Over the user
    parts of a log (`behavior.features.UserParts`) a customer's payments are all in one part,
    so the parts' figures add up (`monthly_combine_sql`).

    Only the payment counts need the lines grouped by (month, user_id, payment_id), and only
    their successful and failed lines; the line counts and sums are taken per month, so the
    big grouping carries two flags, not four sums (about 25% less time at 30M lines)."""
    return f"""
        WITH line AS (
            SELECT {_MONTH} AS month, user_id, payment_id, status, amount
            FROM {payments} WHERE paid_at < {as_of_literal}),
        pay AS (
            SELECT month, user_id, payment_id, bool_or(status = 'success') AS ok, bool_or(status = 'failed') AS failed
            FROM line WHERE status IN ('success', 'failed') GROUP BY ALL),
        by_pay AS (
            SELECT month,
                   count(*) FILTER (WHERE ok) AS payments,
                   count(DISTINCT user_id) FILTER (WHERE ok) AS customers,
                   count(*) FILTER (WHERE failed) AS failed_payments,
                   count(*) AS settled
            FROM pay GROUP BY month),
        by_line AS (
            SELECT month,
                   count(*) FILTER (WHERE status = 'success') AS lines,
                   sum(amount) FILTER (WHERE status = 'success') AS sales,
                   sum(abs(amount)) FILTER (WHERE status = 'refund') AS refunds,
                   count(*) FILTER (WHERE status = 'refund') AS refund_lines
            FROM line GROUP BY month)
        SELECT month, coalesce(payments, 0) AS payments, coalesce(customers, 0) AS customers, lines, sales,
               refunds, coalesce(failed_payments, 0) AS failed_payments, coalesce(settled, 0) AS settled,
               refund_lines
        FROM by_line LEFT JOIN by_pay USING (month)"""


def monthly_combine_sql(partials: str) -> str:
    """`monthly_payments_sql`'s table from the rows of `monthly_partial_sql` of disjoint sets of
    customers (`partials`): the same columns, types and values (sums of the same integers and
    exact decimals, one rounding each)."""
    return f"""
        SELECT month,
               sum(payments)::BIGINT AS payments,
               sum(customers)::BIGINT AS customers,
               sum(lines)::BIGINT AS lines,
               sum(sales)::DOUBLE AS sales,
               coalesce(sum(refunds), 0)::DOUBLE AS refunds,
               sum(failed_payments)::BIGINT AS failed_payments,
               sum(failed_payments) / nullif(sum(settled), 0)::DOUBLE AS failure_rate,
               sum(refund_lines)::BIGINT AS refund_lines,
               sum(refund_lines) / nullif(sum(lines), 0)::DOUBLE AS refund_rate
        FROM {partials} GROUP BY month ORDER BY month"""


def channel_mix_sql(payments: str) -> str:
    """month, channel, payments (successful payments whose first successful line is in that
    channel; 'other' when null), share (of the month's successful payments)."""
    return f"""
        WITH pay AS (
            SELECT user_id, payment_id, min(paid_at) AS paid_at, coalesce(min(channel), 'other') AS channel
            FROM {payments} WHERE status = 'success' GROUP BY ALL),
        by_month AS (SELECT {_MONTH} AS month, channel, count(*) AS payments FROM pay GROUP BY ALL)
        SELECT month, channel, payments, payments / sum(payments) OVER (PARTITION BY month)::DOUBLE AS share
        FROM by_month ORDER BY month, channel"""


def weekday_hour_sql(payments: str) -> str:
    """weekday (0 = Monday .. 6 = Sunday, UTC), hour (0..23, UTC), payments (successful
    payments starting then): the weekly rhythm, for a seasonality heatmap."""
    return f"""
        WITH pay AS (SELECT user_id, payment_id, min(paid_at) AS paid_at
                     FROM {payments} WHERE status = 'success' GROUP BY ALL)
        SELECT (isodow(paid_at AT TIME ZONE 'UTC') - 1)::INTEGER AS weekday,
               hour(paid_at AT TIME ZONE 'UTC')::INTEGER AS hour, count(*) AS payments
        FROM pay GROUP BY ALL ORDER BY weekday, hour"""


def basket_sizes_sql(payments: str, cap: int = 10) -> str:
    """items (sum of quantity of a successful payment's successful lines, `cap` meaning
    `cap` or more), payments, share of successful payments, mean_value (mean payment value)."""
    return f"""
        WITH pay AS (
            SELECT user_id, payment_id, sum(coalesce(quantity, 1)) AS items, sum(amount)::DOUBLE AS value
            FROM {payments} WHERE status = 'success' GROUP BY ALL)
        SELECT least(items, {int(cap)})::INTEGER AS items, count(*) AS payments,
               count(*) / sum(count(*)) OVER ()::DOUBLE AS share, avg(value) AS mean_value
        FROM pay WHERE items > 0 GROUP BY 1 ORDER BY 1"""


def payment_values_sql(payments: str, bins_per_decade: int = 10) -> str:
    """A histogram of successful payment values on a log scale: lower, upper (bin bounds in
    currency units, `bins_per_decade` bins per factor of ten), payments. Payments with a
    non-positive or null value are left out."""
    k = int(bins_per_decade)
    return f"""
        WITH pay AS (
            SELECT user_id, payment_id, sum(amount)::DOUBLE AS value
            FROM {payments} WHERE status = 'success' GROUP BY ALL),
        b AS (SELECT floor(log10(value) * {k})::INTEGER AS bin FROM pay WHERE value > 0)
        SELECT pow(10, bin / {k}.0) AS lower, pow(10, (bin + 1) / {k}.0) AS upper, count(*) AS payments
        FROM b GROUP BY bin ORDER BY bin"""


def top_sql(payments: str, by: str = "category", n: int = 10) -> str:
    """The `n` largest values of `by` ("category" or "merchant_id") by net revenue (successful
    plus refund amounts), then successful payments: key, revenue, payments, customers,
    revenue_share (of the total net revenue). A null key is reported as '(none)'."""
    if by not in ("category", "merchant_id"):
        raise ValueError(f"top_sql ranks by 'category' or 'merchant_id', not {by!r}")
    return f"""
        WITH lines AS (
            SELECT coalesce({by}::VARCHAR, '(none)') AS key, user_id, payment_id, status, amount
            FROM {payments} WHERE status IN ('success', 'refund')),
        agg AS (
            SELECT key, sum(amount)::DOUBLE AS revenue,
                   count(DISTINCT (user_id, payment_id)) FILTER (WHERE status = 'success') AS payments,
                   count(DISTINCT user_id) FILTER (WHERE status = 'success') AS customers
            FROM lines GROUP BY key)
        SELECT key, revenue, payments, customers, revenue / nullif(sum(revenue) OVER (), 0) AS revenue_share
        FROM agg ORDER BY revenue DESC NULLS LAST, payments DESC, key LIMIT {int(n)}"""


__all__ = ["basket_sizes_sql", "channel_mix_sql", "monthly_combine_sql", "monthly_partial_sql", "monthly_payments_sql", "payment_values_sql", "top_sql",
           "weekday_hour_sql"]
