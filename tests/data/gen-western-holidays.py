#!/usr/bin/python3
"""Generate tests/data/western-holidays.tsv, 1901-2099.

Easter comes from python-dateutil's dateutil.easter (Debian python3-dateutil),
which implements the Gregorian computus after Claus Tondering / GM Arts, a
different formulation from the anonymous (Meeus/Jones/Butcher) algorithm in
lib/calendar.c; Orthodox Easter from the same module's EASTER_ORTHODOX. The
weekday rules are counted with Python's calendar module, by walking the month
rather than by the closed formula calendar.c uses.

Run once, from the repository root, and commit the output:
    /usr/bin/python3 tests/data/gen-western-holidays.py
"""
import calendar
import datetime
import os

import dateutil
from dateutil.easter import EASTER_ORTHODOX, EASTER_WESTERN, easter

HERE = os.path.dirname(os.path.abspath(__file__))


def nth_weekday(year, month, weekday, n):
    """weekday: Monday=0 as in the calendar module; n >= 1."""
    days = [d for d in range(1, calendar.monthrange(year, month)[1] + 1)
            if calendar.weekday(year, month, d) == weekday]
    return datetime.date(year, month, days[n - 1])


def main():
    path = os.path.join(HERE, "western-holidays.tsv")
    with open(path, "w", encoding="utf-8") as out:
        out.write("# Western holidays 1901-2099 (calendars/western.yaml).\n")
        out.write("# Generated once by tests/data/gen-western-holidays.py with python-dateutil %s\n"
                  % dateutil.__version__)
        out.write("# (dateutil.easter, Debian python3-dateutil) and Python's calendar module.\n")
        out.write("# Command: /usr/bin/python3 tests/data/gen-western-holidays.py\n")
        out.write("# orthodox-easter is not shipped; the test defines it to check easter: orthodox.\n")
        out.write("# slug\tyear\tdate\n")
        for y in range(1901, 2100):
            thanksgiving = nth_weekday(y, 11, calendar.THURSDAY, 4)
            rows = [
                ("new-year", datetime.date(y, 1, 1)),
                ("valentines", datetime.date(y, 2, 14)),
                ("easter", easter(y, EASTER_WESTERN)),
                ("orthodox-easter", easter(y, EASTER_ORTHODOX)),
                ("mothers-day", nth_weekday(y, 5, calendar.SUNDAY, 2)),
                ("black-friday", thanksgiving + datetime.timedelta(days=1)),
                ("christmas", datetime.date(y, 12, 25)),
            ]
            for slug, d in rows:
                out.write("%s\t%d\t%s\n" % (slug, y, d.isoformat()))
    print("wrote", path)


if __name__ == "__main__":
    main()
