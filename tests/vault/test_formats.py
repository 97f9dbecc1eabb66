from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.formats import (
    MASKS,
    InvalidValue,
    id_check_char,
    id_number,
    landline,
    mobile,
    name,
    plate,
)


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "0086-13800138000",
        "8613800138000",
        "１３８００１３８０００",
    ],
)
def test_mobile_normalises_common_spellings(raw: str) -> None:
    assert mobile(raw) == "13800138000"


@pytest.mark.parametrize(
    "raw", ["1380013800", "23800138000", "12800138000", "138001380001", "abc", "+1 415 555 0100"]
)
def test_mobile_rejects_non_mobiles(raw: str) -> None:
    with pytest.raises(InvalidValue):
        mobile(raw)


def test_mobile_error_does_not_echo_the_value() -> None:
    with pytest.raises(InvalidValue) as exc:
        mobile("99999999999")
    assert "99999999999" not in str(exc.value)


@given(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.sampled_from(["", "+86", "0086", "+86 "]),
    st.sampled_from(["", " ", "-"]),
)
def test_mobile_normalisation_is_stable(digits: str, prefix: str, sep: str) -> None:
    spaced = prefix + digits[:3] + sep + digits[3:7] + sep + digits[7:]
    assert mobile(spaced) == digits
    assert mobile(mobile(spaced)) == digits


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("010-12345678", "010-12345678"),
        ("0755 8888 9999", "0755-88889999"),
        ("(021)6666-7777转123", "021-66667777-123"),
        ("+86 10 12345678", "010-12345678"),
    ],
)
def test_landline(raw: str, want: str) -> None:
    assert landline(raw) == want


def test_landline_rejects_mobile_and_garbage() -> None:
    for raw in ("13800138000", "12345", "1-2-3"):
        with pytest.raises(InvalidValue):
            landline(raw)


def test_resident_id_checksum() -> None:
    # GB 11643 example number.
    assert id_check_char("11010519491231002") == "X"
    assert id_number("11010519491231002x") == "11010519491231002X"
    with pytest.raises(InvalidValue, match="check character"):
        id_number("110105194912310021")
    with pytest.raises(InvalidValue, match="birth date"):
        id_number("110105194913310028")
    with pytest.raises(InvalidValue):
        id_number("1101051949123100")


@given(
    st.from_regex(
        r"[1-6][0-9]{5}(19[5-9][0-9]|200[0-9])(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}",
        fullmatch=True,
    )
)
def test_resident_id_any_single_digit_change_is_caught(first17: str) -> None:
    good = first17 + id_check_char(first17)
    assert id_number(good) == good
    wrong = "X" if good[-1] != "X" else "0"
    with pytest.raises(InvalidValue):
        id_number(good[:-1] + wrong)


@pytest.mark.parametrize(
    ("raw", "want"),
    [("京A12345", "京A12345"), ("粤b·d12345", "粤BD12345"), (" 沪 A-1234X ", "沪A1234X")],
)
def test_plate(raw: str, want: str) -> None:
    assert plate(raw) == want


@pytest.mark.parametrize("raw", ["A12345", "京12345", "京A123", "美A12345"])
def test_plate_rejects(raw: str) -> None:
    with pytest.raises(InvalidValue):
        plate(raw)


def test_name_and_masks() -> None:
    assert name(" 张  三 ") == "张三"
    assert MASKS["name"]("张三") == "张*"
    assert MASKS["name"]("欧阳娜娜") == "欧***"
    assert MASKS["mobile"]("13812345678") == "138****5678"
    assert MASKS["id_number"]("11010519491231002X") == "110***********002X"
    assert MASKS["plate"]("京A12345") == "京A****5"
    assert MASKS["landline"]("010-12345678") == "010-****78"
    assert MASKS["redact"]("anything") == "***"
