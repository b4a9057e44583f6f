"""Working-day deadlines (govmesh/workdays.py) across the official holidays.

The expected dates are written out by hand from the State Council's arrangements, not computed
with chinese-calendar, so the tests check the counting rule and the package's data together:

* 2019 Spring Festival: off 4-10 February; Saturday 2 and Sunday 3 February worked.
* 2019 National Day: off 1-7 October; Sunday 29 September and Saturday 12 October worked.
* 2024 Spring Festival: off 10-17 February; Sunday 4 and Sunday 18 February worked.
* 2024 National Day: off 1-7 October; Sunday 29 September and Saturday 12 October worked.
* 2025 Spring Festival: off 28 January - 4 February; Sunday 26 January and Saturday 8 February worked.

The period starts the day after submission, so the deadline of N working days is the N-th
working day after the submission date (Asia/Shanghai); N = 0 is the submission day itself, or
the next working day when it is not one.
"""

from __future__ import annotations

import datetime

import pytest

from govmesh.workdays import (
    SHANGHAI,
    add_working_days,
    calendar_covers,
    calendar_known,
    is_working_day,
    shanghai_date,
    working_days_between,
)

D = datetime.date


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime.datetime:
    """An instant in Asia/Shanghai."""
    return datetime.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# (submitted, N, deadline)
DEADLINES = [
    # 2019 Spring Festival, submitted on Friday 1 February in the evening: the next day is an
    # adjusted working Saturday, then Sunday, then the week-long holiday.
    pytest.param(at(2019, 2, 1, 20, 30), 0, D(2019, 2, 1), id="2019-spring-friday-evening-0"),
    pytest.param(at(2019, 2, 1, 20, 30), 1, D(2019, 2, 2), id="2019-spring-friday-evening-1"),
    pytest.param(at(2019, 2, 1, 20, 30), 2, D(2019, 2, 3), id="2019-spring-friday-evening-2"),
    pytest.param(at(2019, 2, 1, 20, 30), 3, D(2019, 2, 11), id="2019-spring-friday-evening-3"),
    pytest.param(at(2019, 2, 1, 20, 30), 9, D(2019, 2, 19), id="2019-spring-friday-evening-9"),
    pytest.param(at(2019, 2, 1, 20, 30), 20, D(2019, 3, 6), id="2019-spring-friday-evening-20"),
    # Submitted during the holiday (Wednesday 6 February): nothing counts until Monday 11.
    pytest.param(at(2019, 2, 6), 0, D(2019, 2, 11), id="2019-spring-holiday-0"),
    pytest.param(at(2019, 2, 6), 1, D(2019, 2, 11), id="2019-spring-holiday-1"),
    pytest.param(at(2019, 2, 6), 9, D(2019, 2, 21), id="2019-spring-holiday-9"),
    pytest.param(at(2019, 2, 6), 20, D(2019, 3, 8), id="2019-spring-holiday-20"),
    # Submitted on the adjusted working Saturday itself: it is a working day, so N = 0 is that
    # day, and the period starts on Sunday 3 February, also worked.
    pytest.param(at(2019, 2, 2, 9), 0, D(2019, 2, 2), id="2019-spring-adjusted-saturday-0"),
    pytest.param(at(2019, 2, 2, 9), 1, D(2019, 2, 3), id="2019-spring-adjusted-saturday-1"),
    pytest.param(at(2019, 2, 2, 9), 2, D(2019, 2, 11), id="2019-spring-adjusted-saturday-2"),
    pytest.param(at(2019, 2, 2, 9), 9, D(2019, 2, 20), id="2019-spring-adjusted-saturday-9"),
    # 2019 National Day, submitted on Friday 27 September: Sunday 29 September is worked, then
    # Monday 30, then the holiday, then Saturday 12 October is worked again.
    pytest.param(at(2019, 9, 27, 18), 0, D(2019, 9, 27), id="2019-national-friday-0"),
    pytest.param(at(2019, 9, 27, 18), 1, D(2019, 9, 29), id="2019-national-friday-1"),
    pytest.param(at(2019, 9, 27, 18), 2, D(2019, 9, 30), id="2019-national-friday-2"),
    pytest.param(at(2019, 9, 27, 18), 3, D(2019, 10, 8), id="2019-national-friday-3"),
    pytest.param(at(2019, 9, 27, 18), 7, D(2019, 10, 12), id="2019-national-friday-7"),
    pytest.param(at(2019, 9, 27, 18), 9, D(2019, 10, 15), id="2019-national-friday-9"),
    pytest.param(at(2019, 9, 27, 18), 20, D(2019, 10, 30), id="2019-national-friday-20"),
    # On National Day itself.
    pytest.param(at(2019, 10, 1), 0, D(2019, 10, 8), id="2019-national-holiday-0"),
    pytest.param(at(2019, 10, 1), 1, D(2019, 10, 8), id="2019-national-holiday-1"),
    pytest.param(at(2019, 10, 1), 9, D(2019, 10, 17), id="2019-national-holiday-9"),
    # On the adjusted working Saturday 12 October.
    pytest.param(at(2019, 10, 12), 0, D(2019, 10, 12), id="2019-national-adjusted-saturday-0"),
    pytest.param(at(2019, 10, 12), 1, D(2019, 10, 14), id="2019-national-adjusted-saturday-1"),
    # 2024 Spring Festival: Friday 9 February (New Year's Eve) is a working day; the holiday runs
    # to Saturday 17; Sunday 18 February is worked.
    pytest.param(at(2024, 2, 9, 19), 0, D(2024, 2, 9), id="2024-spring-friday-evening-0"),
    pytest.param(at(2024, 2, 9, 19), 1, D(2024, 2, 18), id="2024-spring-friday-evening-1"),
    pytest.param(at(2024, 2, 9, 19), 2, D(2024, 2, 19), id="2024-spring-friday-evening-2"),
    pytest.param(at(2024, 2, 9, 19), 9, D(2024, 2, 28), id="2024-spring-friday-evening-9"),
    pytest.param(at(2024, 2, 9, 19), 20, D(2024, 3, 14), id="2024-spring-friday-evening-20"),
    # An ordinary Saturday (3 February) before the adjusted Sunday 4 February.
    pytest.param(at(2024, 2, 3), 0, D(2024, 2, 4), id="2024-spring-saturday-0"),
    pytest.param(at(2024, 2, 3), 1, D(2024, 2, 4), id="2024-spring-saturday-1"),
    pytest.param(at(2024, 2, 3), 6, D(2024, 2, 9), id="2024-spring-saturday-6"),
    pytest.param(at(2024, 2, 3), 7, D(2024, 2, 18), id="2024-spring-saturday-7"),
    # 2024 National Day.
    pytest.param(at(2024, 9, 30, 17), 1, D(2024, 10, 8), id="2024-national-1"),
    pytest.param(at(2024, 9, 30, 17), 5, D(2024, 10, 12), id="2024-national-5"),
    pytest.param(at(2024, 9, 30, 17), 6, D(2024, 10, 14), id="2024-national-6"),
    pytest.param(at(2024, 9, 27, 17), 1, D(2024, 9, 29), id="2024-national-friday-1"),
    pytest.param(at(2024, 9, 27, 17), 9, D(2024, 10, 15), id="2024-national-friday-9"),
    pytest.param(at(2024, 9, 27, 17), 20, D(2024, 10, 30), id="2024-national-friday-20"),
    # 2025 Spring Festival: Sunday 26 January worked, off 28 January to 4 February, Saturday
    # 8 February worked.
    pytest.param(at(2025, 1, 24, 21), 1, D(2025, 1, 26), id="2025-spring-friday-evening-1"),
    pytest.param(at(2025, 1, 24, 21), 2, D(2025, 1, 27), id="2025-spring-friday-evening-2"),
    pytest.param(at(2025, 1, 24, 21), 3, D(2025, 2, 5), id="2025-spring-friday-evening-3"),
    pytest.param(at(2025, 1, 24, 21), 6, D(2025, 2, 8), id="2025-spring-friday-evening-6"),
    pytest.param(at(2025, 1, 24, 21), 9, D(2025, 2, 12), id="2025-spring-friday-evening-9"),
    pytest.param(at(2025, 1, 30), 0, D(2025, 2, 5), id="2025-spring-holiday-0"),
    pytest.param(at(2025, 1, 30), 4, D(2025, 2, 8), id="2025-spring-holiday-4"),
]


@pytest.mark.parametrize(("submitted", "days", "deadline"), DEADLINES)
def test_deadline(submitted: datetime.datetime, days: int, deadline: datetime.date) -> None:
    assert add_working_days(submitted, days) == deadline
    assert is_working_day(deadline)
    if days:
        # The inverse: the working days from the submission date to the deadline are N.
        assert working_days_between(submitted.date(), deadline) == days


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (D(2019, 2, 1), True),
        (D(2019, 2, 2), True),  # adjusted working Saturday
        (D(2019, 2, 3), True),  # adjusted working Sunday
        (D(2019, 2, 4), False),  # New Year's Eve, a Monday
        (D(2019, 2, 5), False),  # Spring Festival
        (D(2019, 2, 10), False),  # a Sunday inside the holiday
        (D(2019, 2, 11), True),
        (D(2019, 2, 16), False),  # an ordinary Saturday
        (D(2019, 9, 29), True),
        (D(2019, 10, 7), False),
        (D(2019, 10, 12), True),
        (D(2024, 2, 4), True),
        (D(2024, 2, 17), False),
        (D(2024, 2, 18), True),
        (D(2024, 9, 29), True),
        (D(2024, 10, 12), True),
        (D(2025, 1, 26), True),
        (D(2025, 1, 28), False),
        (D(2025, 2, 4), False),
        (D(2025, 2, 8), True),
    ],
)
def test_is_working_day(day: datetime.date, working: bool) -> None:
    assert is_working_day(day) is working


def test_the_submission_day_counts_in_shanghai_time() -> None:
    # 16:30 UTC on Friday 1 February 2019 is 00:30 on Saturday 2 February in Hangzhou: the
    # period starts on Sunday 3 February.
    utc = datetime.datetime(2019, 2, 1, 16, 30, tzinfo=datetime.UTC)
    assert shanghai_date(utc) == D(2019, 2, 2)
    assert add_working_days(utc, 1) == D(2019, 2, 3)
    # A minute earlier it is still Friday in Hangzhou.
    assert add_working_days(utc - datetime.timedelta(minutes=31), 1) == D(2019, 2, 2)


def test_the_hour_of_submission_does_not_matter() -> None:
    early, late = at(2019, 9, 27, 0, 0), at(2019, 9, 27, 23, 59)
    assert add_working_days(early, 9) == add_working_days(late, 9) == D(2019, 10, 15)


@pytest.mark.parametrize("days", [-1, -20])
def test_negative_days_are_refused(days: int) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        add_working_days(at(2019, 2, 1), days)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        add_working_days(at(2019, 2, 1), True)
    with pytest.raises(TypeError):
        add_working_days(at(2019, 2, 1), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_days(datetime.datetime(2019, 2, 1, 10), 1)
    with pytest.raises(TypeError):
        add_working_days(D(2019, 2, 1), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        is_working_day(datetime.datetime(2019, 2, 1, 10, tzinfo=SHANGHAI))
    with pytest.raises(TypeError):
        working_days_between(D(2019, 2, 1), datetime.datetime(2019, 2, 2, tzinfo=SHANGHAI))


def test_working_days_between() -> None:
    assert working_days_between(D(2019, 2, 1), D(2019, 2, 1)) == 0
    assert working_days_between(D(2019, 2, 1), D(2019, 2, 19)) == 9
    assert working_days_between(D(2019, 2, 19), D(2019, 2, 1)) == -9
    # The whole 2019 Spring Festival week counts nothing; its adjusted weekend counts two.
    assert working_days_between(D(2019, 2, 3), D(2019, 2, 10)) == 0
    assert working_days_between(D(2019, 2, 1), D(2019, 2, 3)) == 2
    # A whole year: 2019 had 261 weekdays, 17 of them holidays, and 6 adjusted working weekend
    # days (2-3 February, 28 April, 5 May, 29 September, 12 October): 250 working days.
    assert working_days_between(D(2018, 12, 31), D(2019, 12, 31)) == 250


def test_inverse_over_a_range_of_starts() -> None:
    start = at(2019, 1, 20, 15)
    for offset in range(0, 300, 7):
        submitted = start + datetime.timedelta(days=offset)
        for days in (1, 2, 5, 9, 20):
            deadline = add_working_days(submitted, days)
            assert working_days_between(submitted.date(), deadline) == days
            assert working_days_between(submitted.date(), deadline - datetime.timedelta(days=1)) == days - 1


def test_years_the_calendar_does_not_know_fall_back_to_monday_to_friday() -> None:
    assert calendar_known(2019) and calendar_known(2024) and calendar_known(2025)
    assert not calendar_known(2003)
    assert not calendar_known(2100)
    # 1 October 2100 is a Friday: with no arrangements known, it is still National Day (the
    # statutory holidays count); 30 September, a Thursday, is a working day. Adjusted weekends
    # are unknown until published: callers flag such deadlines as provisional.
    assert not is_working_day(D(2100, 10, 1))
    assert is_working_day(D(2100, 9, 30))
    assert not is_working_day(D(2100, 10, 2))  # a Saturday
    assert add_working_days(at(2100, 9, 29), 1) == D(2100, 9, 30)
    assert add_working_days(at(2100, 9, 30), 1) == D(2100, 10, 4)
    assert calendar_covers(D(2019, 12, 20), D(2020, 1, 10))
    assert not calendar_covers(D(2100, 1, 1), D(2019, 1, 1))


def test_counting_across_the_last_known_year() -> None:
    # Both years known or not, counting never raises across the boundary.
    last = max(year for year in range(2004, 2200) if calendar_known(year))
    submitted = at(last, 12, 25)
    deadline = add_working_days(submitted, 20)
    assert deadline.year == last + 1
    assert working_days_between(submitted.date(), deadline) == 20
    assert not calendar_covers(submitted.date(), deadline)


def test_statutory_holidays_match_the_official_calendar_where_it_is_known() -> None:
    """The holidays counted for years the calendar does not know, computed (lunardate, the
    Qingming formula) for years it does: each is a holiday there. The Spring Festival's eve and
    2 May became statutory in 2025, so before that they are not checked."""
    import chinese_calendar
    from lunardate import LunarDate

    from govmesh.workdays import statutory_holidays

    for year in range(2008, 2027):
        eve = LunarDate(year, 1, 1).to_solar_date() - datetime.timedelta(days=1)
        added_in_2025 = {datetime.date(year, 5, 2), eve}
        days = statutory_holidays(year) - (added_in_2025 if year < 2025 else set())
        assert [d for d in days if not chinese_calendar.is_holiday(d)] == [], year


def test_a_provisional_deadline_never_lands_on_a_statutory_holiday() -> None:
    """2030 is a year the calendar does not know: 1 January (a Tuesday), the Spring Festival
    (3 February), 1-3 October are not working days, though Monday-Friday would count them."""
    assert not calendar_known(2030)
    for holiday in (datetime.date(2030, 1, 1), datetime.date(2030, 2, 4), datetime.date(2030, 10, 1)):
        assert holiday.weekday() < 5 and not is_working_day(holiday)
    assert is_working_day(datetime.date(2030, 1, 2))
    # Submitted on the last working day of 2029, one working day: 2 January, not 1 January.
    monday = datetime.datetime(2029, 12, 31, 2, 0, tzinfo=datetime.UTC)  # 10:00 in Hangzhou
    assert add_working_days(monday, 1) == datetime.date(2030, 1, 2)
