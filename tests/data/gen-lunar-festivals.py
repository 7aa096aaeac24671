#!/usr/bin/python3
"""Generate tests/data/lunar-festivals.tsv and tests/data/lunar-months.tsv.

The source is python3-lunardate (Debian package python3-lunardate, pure Python,
its own month table), not liblunar-date that lib/calendar.c uses, so the
unit test compares two implementations. Both tables descend from the "lunar"
program by Fung F. Lee and Ricky Yeung, so a shared transcription error would
not be caught here; test_calendar.c also checks published Spring Festival
dates, and `--astro` (needs python3-ephem) recomputes every month start from
new moons and solar terms as the official rules (GB/T 33661-2017) define them
and reports where the tables disagree with astronomy.

Run once, from the repository root, and commit the output:
    /usr/bin/python3 tests/data/gen-lunar-festivals.py
    /usr/bin/python3 tests/data/gen-lunar-festivals.py --astro   # report only
"""
import datetime
import os
import sys

import lunardate
from lunardate import LunarDate

FIRST, LAST = 1901, 2099
HERE = os.path.dirname(os.path.abspath(__file__))

# slug -> (lunar month, lunar day); chinese-new-years-eve is computed apart.
FESTIVALS = [
    ("spring-festival", 1, 1),
    ("lantern", 1, 15),
    ("dragon-boat", 5, 5),
    ("qixi", 7, 7),
    ("mid-autumn", 8, 15),
    ("double-ninth", 9, 9),
    ("laba", 12, 8),
]


def month_len(y, m, leap):
    """29 or 30, or None if that month does not exist."""
    try:
        LunarDate(y, m, 1, leap).toSolarDate()
    except ValueError:
        return None
    try:
        LunarDate(y, m, 30, leap).toSolarDate()
        return 30
    except ValueError:
        return 29


def new_years_eve(y):
    """The last day of the previous lunar year's 12th month (or of a leap
    12th month), found by month lengths rather than "the day before 1-1", so
    that it checks the offset arithmetic in calendar.c independently."""
    prev = y - 1
    if month_len(prev, 12, True):
        last = (12, True)
    else:
        last = (12, False)
    n = month_len(prev, last[0], last[1])
    return LunarDate(prev, last[0], n, last[1]).toSolarDate()


def header(out, what):
    out.write("# %s\n" % what)
    out.write("# Generated once by tests/data/gen-lunar-festivals.py from python3-lunardate\n")
    out.write("# (Debian python3-lunardate, module %s), independent of liblunar-date.\n"
              % os.path.basename(lunardate.__file__))
    out.write("# Command: /usr/bin/python3 tests/data/gen-lunar-festivals.py\n")
    out.write("# Years are lunar years (see calendars/cn.yaml); dates are Gregorian.\n")
    out.write("# Astronomical cross-check (--astro, python3-ephem 4.1.4, new moons and major\n")
    out.write("# terms in UTC+8): of the months 1900-2098, 7 start a day apart from this\n")
    out.write("# table, all before 1979 (1914-10, 1916-1, 1920-10, 1933-6, 1954-11, 1956-11,\n")
    out.write("# 1978-8), when the published calendar used other time bases and methods;\n")
    out.write("# none from 1979 to 2099, including the leap 11th month of 2033.\n")


def gen_festivals():
    path = os.path.join(HERE, "lunar-festivals.tsv")
    with open(path, "w", encoding="utf-8") as out:
        header(out, "Chinese lunar festivals %d-%d." % (FIRST, LAST))
        out.write("# slug\tyear\tdate\n")
        for y in range(FIRST, LAST + 1):
            out.write("chinese-new-years-eve\t%d\t%s\n" % (y, new_years_eve(y).isoformat()))
            for slug, m, d in FESTIVALS:
                out.write("%s\t%d\t%s\n" % (slug, y, LunarDate(y, m, d).toSolarDate().isoformat()))
    print("wrote", path)


def gen_months():
    path = os.path.join(HERE, "lunar-months.tsv")
    with open(path, "w", encoding="utf-8") as out:
        header(out, "Every lunar month 1900-2099: first day and length.")
        out.write("# year\tmonth\tleap\tfirst_day\tdays\n")
        for y in range(1900, 2100):
            for m in range(1, 13):
                for leap in (False, True):
                    n = month_len(y, m, leap)
                    if n is None:
                        continue
                    start = LunarDate(y, m, 1, leap).toSolarDate()
                    out.write("%d\t%d\t%d\t%s\t%d\n" % (y, m, int(leap), start.isoformat(), n))
    print("wrote", path)


def astro_check():
    """Chinese calendar from astronomy (UTC+8): a month starts on the day of a
    new moon; the month holding the winter solstice is the 11th; when 13 new
    moons separate two 11th months, the first month with no major term
    (zhongqi) is the leap month. Prints the months where lunardate differs."""
    import math

    import ephem

    tz = 8 * ephem.hour

    def cst_day(d):
        t = ephem.Date(d + tz).tuple()
        return datetime.date(t[0], t[1], t[2])

    def sun_lon(d):
        s = ephem.Sun(d)
        return float(ephem.Ecliptic(ephem.Equatorial(s.g_ra, s.g_dec, epoch=d), epoch=d).lon)

    def term_after(d, deg):
        target = math.radians(deg)
        f = lambda x: (sun_lon(x) - target + math.pi) % (2 * math.pi) - math.pi
        t = ephem.Date(d)
        while f(t) >= 0:
            t = ephem.Date(t + 1)
        while f(t) < 0:
            t = ephem.Date(t + 1)
        lo, hi = t - 1, t
        for _ in range(50):
            mid = (lo + hi) / 2
            if f(mid) < 0:
                lo = mid
            else:
                hi = mid
        return ephem.Date(hi)

    def solstice(y):  # winter solstice of Gregorian year y, as a CST date
        return cst_day(term_after(ephem.Date("%d/12/1" % y), 270))

    def new_moons(a, b):
        out, d = [], ephem.previous_new_moon(ephem.Date(a) - 1)
        while True:
            day = cst_day(d)
            if day > b:
                return out
            out.append(day)
            d = ephem.next_new_moon(ephem.Date(d) + 1)

    zhongqi = {}
    for y in range(1899, 2101):
        for k in range(12):  # major terms at 0, 30, ... 330 degrees
            deg = 30 * k
            t = term_after(ephem.Date("%d/1/1" % y) + 30.4 * ((deg - 270) % 360) / 30 - 20, deg)
            zhongqi[cst_day(t)] = deg
    zq_days = sorted(zhongqi)

    def has_zhongqi(a, b):  # any major term in [a, b)
        return any(a <= z < b for z in zq_days)

    diffs = 0
    for y in range(1900, 2099):  # lunar months 11 of y-1 .. 10 of y (and 11-12 of y)
        s0, s1 = solstice(y - 1), solstice(y)
        moons = new_moons(s0 - datetime.timedelta(days=31), s1 + datetime.timedelta(days=60))
        m11a = max(m for m in moons if m <= s0)
        m11b = max(m for m in moons if m <= s1)
        seg = [m for m in moons if m11a <= m <= m11b]
        names, leap_done = [], len(seg) - 1 != 13
        num = 11
        for i in range(len(seg) - 1):
            if not leap_done and i > 0 and not has_zhongqi(seg[i], seg[i + 1]):
                names.append((num, True))
                leap_done = True
                continue
            num = num % 12 + 1 if i > 0 else 11
            names.append((num, False))
        for (m, leap), start in zip(names, seg):
            ly = y if m < 11 else y - 1
            if m >= 11 and start.month <= 2 and start.year == y:
                ly = y - 1
            if ly < 1900:
                continue
            try:
                lib = LunarDate(ly, m, 1, leap).toSolarDate()
            except ValueError:
                lib = None
            if lib != start:
                diffs += 1
                print("differs: lunar %d-%s%d astro starts %s, lunardate %s"
                      % (ly, "*" if leap else "", m, start, lib))
    print("astronomical check: %d month(s) differ" % diffs)


if __name__ == "__main__":
    if "--astro" in sys.argv:
        astro_check()
    else:
        gen_festivals()
        gen_months()
