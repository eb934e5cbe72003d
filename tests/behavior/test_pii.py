import numpy as np
from hypothesis import given, strategies as st

from behavior.pii import card_numbers_in, has_card_number, luhn_valid, mask_card_numbers


def with_check_digit(body: str) -> str:
    """Append the Luhn check digit to `body` (the textbook algorithm, written independently)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these become the doubled positions once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def test_luhn_known_numbers():
    assert luhn_valid(np.array(["4111111111111111", "5500000000000004", "4111111111111112"])).tolist() == [True, True, False]
    assert luhn_valid(np.array(["378282246310005"])).tolist() == [True]  # Amex test number


def test_separators_and_masking():
    text = "paid 4111 1111 1111 1111 and 5500-0000-0000-0004 ref 123"
    assert card_numbers_in(text) == ["4111 1111 1111 1111", "5500-0000-0000-0004"]
    assert mask_card_numbers(text) == "paid ************1111 and ************0004 ref 123"


def test_short_or_invalid_runs_are_not_cards():
    assert not has_card_number(["123456789012", "4111111111111112", "2025-01-01 10:00:00", None]).any()


@given(body=st.text(alphabet="0123456789", min_size=12, max_size=18),
       prefix=st.text(alphabet="abc xyz:", max_size=5), suffix=st.text(alphabet="abc xyz:", max_size=5))
def test_any_valid_card_is_found_and_masked(body, prefix, suffix):
    card = with_check_digit(body)
    text = prefix + card + suffix
    assert has_card_number([text])[0]
    masked = mask_card_numbers(text)
    assert card not in masked and masked.endswith(card[-4:] + suffix)
    assert not has_card_number([masked])[0]
