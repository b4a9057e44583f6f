"""Statutory deadlines in working days of the official Chinese calendar (pure domain logic).

A working day is a day the State Council's holiday arrangements (国务院办公厅关于部分节假日安排的
通知) make a working day: Monday to Friday unless a public holiday, plus the adjusted working
weekends (调休上班) that pay for long holidays. The chinese-calendar package carries those
arrangements year by year; this module is the only place that reads it.

Decisions a reader should know:

* Counting. A period in working days starts on the day after submission (行政许可法 art. 82
  counts deadlines in working days; Civil Code art. 201: the day an event happens is not
  counted, the period starts the next day). So a deadline of N working days is the N-th working
  day strictly after the submission date, whatever the hour of submission: a case submitted on
  Friday evening, on a holiday or on an adjusted working Saturday starts counting the next day.
  The deadline date is the day on which the N-th working day ends: the case must be decided by
  the end of that day.
* N = 0 (decided on the spot, 当场办结) gives the submission date when it is a working day and
  otherwise the next working day: a deadline is always a working day.
* Time zone. Dates are Asia/Shanghai dates (govmesh.clock.shanghai_date, which every service
  uses for the province's calendar day).
* Years the calendar does not know. chinese-calendar raises NotImplementedError outside the years
  whose arrangements it ships (2004-2026 in 1.11.0; the State Council publishes each year's
  arrangements late in the year before, and a new release of the package follows). For such
  years this module counts Monday-Friday without the statutory holidays (全国年节及纪念日放假办法,
  as revised in 2024: New Year's Day, the Spring Festival's eve and first three days, Qingming,
  1-2 May, the Dragon Boat and Mid-Autumn festivals, 1-3 October), the lunar ones computed with
  lunardate and Qingming by the solar-term formula. Only the adjusted weekends and the days
  joined to a holiday are unknown before they are published, so a deadline may still be off by a
  day or two (issue 14: one landed on 1 January). It never raises:
  a case must get a deadline even then. Callers that show a deadline call
  :func:`calendar_known` (or :func:`calendar_covers`) and flag it as provisional, and the
  package should be upgraded when a new year's arrangements appear.
"""

from __future__ import annotations

import datetime
import functools
from typing import Final

import chinese_calendar
from lunardate import LunarDate

from govmesh.clock import SHANGHAI, shanghai_date

__all__ = [
    "SHANGHAI",
    "add_working_days",
    "calendar_covers",
    "calendar_known",
    "is_working_day",
    "shanghai_date",
    "working_days_between",
]


_ONE_DAY: Final = datetime.timedelta(days=1)


@functools.cache
def calendar_known(year: int) -> bool:
    """True when chinese-calendar has the official arrangements for ``year``; otherwise working
    days of that year are the Monday-Friday estimate (see the module docstring)."""
    try:
        chinese_calendar.is_workday(datetime.date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def calendar_covers(start: datetime.date, end: datetime.date) -> bool:
    """True when every year from ``start`` to ``end`` (either order) is :func:`calendar_known`:
    working days counted between them follow the official calendar, not the estimate."""
    low, high = sorted((start.year, end.year))
    return all(calendar_known(year) for year in range(low, high + 1))


def is_working_day(day: datetime.date) -> bool:
    """True when ``day`` is a working day: the official calendar, or Monday-Friday for a year it
    does not know. ``day`` is a calendar date in Asia/Shanghai; a datetime is refused, since its
    date depends on a time zone the caller must choose (see :func:`shanghai_date`)."""
    if isinstance(day, datetime.datetime) or not isinstance(day, datetime.date):
        raise TypeError("day must be a datetime.date (a calendar date in Asia/Shanghai)")
    return _working_day(day)


# A date's answer never changes within a process (the calendar is the installed package's), and
# chinese-calendar looks over its whole table of years on every call: a case's deadline (some 30
# days looked at) cost approvals' api about 0.4 ms per submission (issue 13). Ten years of days.
@functools.lru_cache(maxsize=4096)
def _working_day(day: datetime.date) -> bool:
    if calendar_known(day.year):
        return bool(chinese_calendar.is_workday(day))
    return day.weekday() < 5 and day not in statutory_holidays(day.year)


@functools.cache
def statutory_holidays(year: int) -> frozenset[datetime.date]:
    """The statutory public holidays of ``year`` under the rules in force since 2025 (the days the
    law names, without the adjusted weekends and joined days each year's arrangement adds), for
    years the calendar does not know."""
    fixed = [(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)]
    days = {datetime.date(year, month, day) for month, day in fixed}
    days.add(datetime.date(year, 4, _qingming_day(year)))
    try:
        new_year = LunarDate(year, 1, 1).to_solar_date()
        days |= {new_year + datetime.timedelta(days=offset) for offset in (-1, 0, 1, 2)}  # eve to the 3rd
        days.add(LunarDate(year, 5, 5).to_solar_date())  # 端午
        days.add(LunarDate(year, 8, 15).to_solar_date())  # 中秋
    except ValueError:
        pass  # lunardate's tables end in 2099: the fixed-date holidays still count
    return frozenset(days)


def _qingming_day(year: int) -> int:
    """The April day of 清明, the solar term (the "寿星" formula, exact for 1901-2100)."""
    y = year % 100
    constant = 5.59 if year < 2001 else 4.81
    return int(y * 0.2422 + constant) - y // 4


def add_working_days(start: datetime.datetime, days: int) -> datetime.date:
    """The deadline date of a period of ``days`` working days from the instant ``start``.

    The period starts on the day after ``start``'s Asia/Shanghai date: the result is the
    ``days``-th working day after that date, or for ``days == 0`` the date itself when it is a
    working day and otherwise the next working day. Negative ``days`` are refused (ValueError).
    """
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError("days must be an int")
    if days < 0:
        raise ValueError(f"days must not be negative (got {days})")
    day = shanghai_date(start)
    if days == 0:
        while not is_working_day(day):
            day += _ONE_DAY
        return day
    remaining = days
    while remaining:
        day += _ONE_DAY
        if is_working_day(day):
            remaining -= 1
    return day


def working_days_between(start: datetime.date, end: datetime.date) -> int:
    """The working days after ``start`` up to and including ``end``: 0 when they are equal, and
    negative (minus the count from ``end`` to ``start``) when ``end`` is before ``start``.

    It is the inverse of :func:`add_working_days` for ``days >= 1``:
    ``working_days_between(d, add_working_days(t, n)) == n`` where ``d`` is ``t``'s date. So
    ``working_days_between(today, deadline)`` is the working days left, and
    ``working_days_between(deadline, today)`` how many a case is overdue.
    """
    for value in (start, end):
        if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
            raise TypeError("start and end must be datetime.date values (calendar dates in Asia/Shanghai)")
    if end < start:
        return -working_days_between(end, start)
    count = 0
    day = start + _ONE_DAY
    while day <= end:
        if is_working_day(day):
            count += 1
        day += _ONE_DAY
    return count
