#!/usr/bin/python3
"""gen-demo-data.py: deterministic demo customers and orders for nudge.

    contrib/gen-demo-data.py --customers 1000 --out demo/

writes demo/customers.csv and demo/orders.csv in the formats of DESIGN.md
"Interfaces" (UTF-8, a header row, RFC 4180 quoting by the csv module), ready
for `nudgectl import customers|orders FILE.csv`. The same arguments always give
byte-identical files: every random choice comes from one seeded generator and
nothing reads the clock.

The mix is made to exercise the shipped rules around the reference date
(--today, default 2027-01-01):
  - about 40% Chinese customers (Asia/Shanghai, Asia/Hong_Kong, Asia/Taipei;
    traditional characters in Hong Kong and Taiwan), first_name = given name;
    the rest in New York, Los Angeles, London, Berlin and Sydney, and ~5% with
    an empty tz (the configured default zone applies);
  - tiers: high-value ~10%, potential ~25%, normal the rest;
  - ~8% without an email address; consent_email / consent_sms yes|no;
  - birthdays spread over the whole year (so any month has plenty), ~1.5% on
    29 February of a leap year, ~2% without a year (--MM-DD), ~2% unknown;
  - E.164 phone numbers from ranges reserved for fiction where a country has
    them; email addresses only under example.com/.net/.org (RFC 2606);
  - orders: ~18% of customers have none, the others 1-20 in the two years
    before --today, and about a quarter of those have lapsed (last order more
    than 90 days before --today) while others lapse during the following weeks;
  - a few values that need CSV quoting (commas, double quotes).
"""

import argparse
import csv
import datetime as dt
import os
import random
import sys

CUSTOMER_COLUMNS = ["id", "name", "first_name", "email", "phone", "birthday", "tz", "tier",
                    "owner", "tags", "consent_email", "consent_sms", "created_at", "city"]
ORDER_COLUMNS = ["customer_id", "order_id", "amount", "currency", "ordered_at"]

STAFF = ["alice", "bob", "chen.li", "wang.min", "lin.yijun", "david", "emma", "lukas"]

# Chinese surnames: (simplified, traditional, pinyin).
CN_SURNAMES = [
    ("王", "王", "wang"), ("李", "李", "li"), ("张", "張", "zhang"), ("刘", "劉", "liu"),
    ("陈", "陳", "chen"), ("杨", "楊", "yang"), ("黄", "黃", "huang"), ("赵", "趙", "zhao"),
    ("吴", "吳", "wu"), ("周", "周", "zhou"), ("徐", "徐", "xu"), ("孙", "孫", "sun"),
    ("马", "馬", "ma"), ("朱", "朱", "zhu"), ("胡", "胡", "hu"), ("郭", "郭", "guo"),
    ("何", "何", "he"), ("林", "林", "lin"), ("高", "高", "gao"), ("罗", "羅", "luo"),
    ("郑", "鄭", "zheng"), ("谢", "謝", "xie"), ("欧阳", "歐陽", "ouyang"),
]
# Given names: (simplified, traditional, pinyin).
CN_GIVEN = [
    ("芳", "芳", "fang"), ("伟", "偉", "wei"), ("静", "靜", "jing"), ("敏", "敏", "min"),
    ("磊", "磊", "lei"), ("洋", "洋", "yang"), ("艳", "艷", "yan"), ("勇", "勇", "yong"),
    ("军", "軍", "jun"), ("杰", "傑", "jie"), ("娟", "娟", "juan"), ("涛", "濤", "tao"),
    ("明", "明", "ming"), ("超", "超", "chao"), ("秀英", "秀英", "xiuying"),
    ("建国", "建國", "jianguo"), ("志强", "志強", "zhiqiang"), ("丽娟", "麗娟", "lijuan"),
    ("子涵", "子涵", "zihan"), ("雨桐", "雨桐", "yutong"), ("浩然", "浩然", "haoran"),
    ("欣怡", "欣怡", "xinyi"), ("俊杰", "俊傑", "junjie"), ("嘉欣", "嘉欣", "jiaxin"),
    ("家豪", "家豪", "jiahao"), ("怡君", "怡君", "yijun"), ("冠宇", "冠宇", "guanyu"),
    ("淑芬", "淑芬", "shufen"), ("美玲", "美玲", "meiling"), ("文华", "文華", "wenhua"),
]

EN_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
            "David", "Elizabeth", "William", "Susan", "Sarah", "Thomas", "Emily", "Daniel",
            "Olivia", "Jack", "Charlotte", "Noah", "Amelia", "Liam", "Grace", "Chloe",
            "José", "Zoë", "Siobhán", "Renée"]
EN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "Wilson", "Taylor", "Anderson", "Thomas", "Moore", "Martin", "Clarke", "Walker",
           "O'Brien", "Nguyen", "Patel", "Kim", "Hughes", "Murphy", "Kelly", "Núñez"]
NICKNAMES = {"James": "Jim", "Robert": "Bob", "Patricia": "Pat", "Jennifer": "Jen",
             "Michael": "Mike", "Elizabeth": "Liz", "William": "Bill", "Susan": "Sue",
             "Thomas": "Tom", "Daniel": "Dan"}
DE_FIRST = ["Lukas", "Anna", "Jürgen", "Sabine", "Felix", "Lea", "Maximilian", "Sophie",
            "Jonas", "Marie", "Björn", "Katharina", "Uwe", "Hannah"]
DE_LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Schulz", "Hoffmann", "Schröder", "Koch", "Groß", "Krüger"]

# Region: zone, cities, currency, name style, share of all customers (sums to 1).
REGIONS = [
    ("Asia/Shanghai", ["Shanghai", "Beijing", "Hangzhou", "Shenzhen", "Chengdu", "Guangzhou"],
     "CNY", "cn-simplified", 0.28),
    ("Asia/Hong_Kong", ["Hong Kong", "Kowloon"], "HKD", "cn-traditional", 0.06),
    ("Asia/Taipei", ["Taipei", "Taichung", "Kaohsiung"], "TWD", "cn-traditional", 0.06),
    ("America/New_York", ["New York", "Boston", "Miami", "Washington, D.C."], "USD", "en", 0.16),
    ("America/Los_Angeles", ["Los Angeles", "San Francisco", "Seattle"], "USD", "en", 0.11),
    ("Europe/London", ["London", "Manchester", "Edinburgh"], "GBP", "en", 0.10),
    ("Europe/Berlin", ["Berlin", "Munich", "Hamburg", "Köln"], "EUR", "de", 0.10),
    ("Australia/Sydney", ["Sydney", "Melbourne", "Brisbane"], "AUD", "en", 0.08),
    ("", ["Singapore", "Toronto", "Dublin", "Auckland"], "USD", "en", 0.05),
]

# Rough units of currency per US dollar, to make order amounts look local.
FX = {"CNY": 7.2, "HKD": 7.8, "TWD": 32.0, "USD": 1.0, "GBP": 0.79, "EUR": 0.92, "AUD": 1.5}

TAGS = ["newsletter", "app-user", "loyalty", "events", "wholesale", "no-marketing"]
EMAIL_DOMAINS = ["example.com", "example.net", "example.org"]
LEAP_YEARS = [y for y in range(1952, 2005) if y % 4 == 0]


def pick_weighted(rng, items, weight_index):
    """Chooses from items by the weight at items[i][weight_index]."""
    x = rng.random() * sum(it[weight_index] for it in items)
    for it in items:
        x -= it[weight_index]
        if x < 0:
            return it
    return items[-1]


def phone_for(rng, zone):
    """An E.164 number in the customer's country, fictional ranges where they exist."""
    if zone == "Asia/Shanghai":
        return "+86" + rng.choice(["138", "139", "150", "186", "177"]) + "%08d" % rng.randrange(10**8)
    if zone == "Asia/Hong_Kong":
        return "+852" + rng.choice("5679") + "%07d" % rng.randrange(10**7)
    if zone == "Asia/Taipei":
        return "+8869" + "%08d" % rng.randrange(10**8)
    if zone == "":
        # No zone on file: a number from any of the countries above.
        return phone_for(rng, rng.choice([r[0] for r in REGIONS if r[0]]))
    if zone in ("America/New_York", "America/Los_Angeles"):
        area = rng.choice(["212", "617", "305", "202"] if zone == "America/New_York" else
                          ["213", "415", "206", "310"])
        return "+1" + area + "55501" + "%02d" % rng.randrange(100)     # 555-0100..0199
    if zone == "Europe/London":
        return "+447700900" + "%03d" % rng.randrange(1000)              # Ofcom drama range
    if zone == "Europe/Berlin":
        return "+49" + rng.choice(["151", "160", "170", "176"]) + "%08d" % rng.randrange(10**8)
    if zone == "Australia/Sydney":
        return "+61491570" + "%03d" % rng.randrange(1000)               # ACMA drama range
    raise ValueError(zone)


def make_name(rng, style, index):
    """Returns (name, first_name, email local part)."""
    if style.startswith("cn"):
        trad = style == "cn-traditional"
        sur = rng.choice(CN_SURNAMES)
        giv = rng.choice(CN_GIVEN)
        name = (sur[1] + giv[1]) if trad else (sur[0] + giv[0])
        first = giv[1] if trad else giv[0]
        local = "%s.%s" % (sur[2], giv[2])
    else:
        firsts, lasts = (DE_FIRST, DE_LAST) if style == "de" else (EN_FIRST, EN_LAST)
        first = rng.choice(firsts)
        last = rng.choice(lasts)
        name = "%s %s" % (first, last)
        # A few names that need quoting in CSV.
        r = rng.random()
        if style == "en" and r < 0.006 and first in NICKNAMES:
            name = '%s "%s" %s' % (first, NICKNAMES[first], last)
        elif style == "en" and r < 0.012:
            name = "%s, Jr." % name
        local = "%s.%s" % (ascii_fold(first), ascii_fold(last))
    return name, first, "%s%d" % (local.lower(), index)


def ascii_fold(s):
    """Folds accented Latin letters for an email local part: Müller -> mueller."""
    table = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
             "é": "e", "ë": "e", "è": "e", "á": "a", "í": "i", "ó": "o", "ú": "u", "ñ": "n",
             "Ñ": "N", "'": ""}
    return "".join(table.get(c, c) for c in s)


def make_birthday(rng):
    r = rng.random()
    if r < 0.015:
        return "%04d-02-29" % rng.choice(LEAP_YEARS)
    if r < 0.035:
        d = dt.date(2001, 1, 1) + dt.timedelta(days=rng.randrange(365))
        return "--%02d-%02d" % (d.month, d.day)
    if r < 0.055:
        return ""
    year = rng.randrange(1955, 2006)
    # Day of a common year, so 29 February only comes from the branch above.
    d = dt.date(2001, 1, 1) + dt.timedelta(days=rng.randrange(365))
    return "%04d-%02d-%02d" % (year, d.month, d.day)


def make_tags(rng, tier, style):
    tags = []
    # Many Chinese customers celebrate their lunar birthday (rules/lunar-birthday.yaml).
    if style.startswith("cn") and rng.random() < 0.4:
        tags.append("lunar-birthday")
    if tier == "high-value" and rng.random() < 0.7 or tier != "high-value" and rng.random() < 0.03:
        tags.append("vip")
    for t in TAGS:
        if rng.random() < (0.04 if t == "no-marketing" else 0.2):
            tags.append(t)
    return ";".join(tags)


def make_orders(rng, cust, today, first_order_id):
    """Orders for one customer: a list of (order_id, amount, ordered_at)."""
    tier = cust["tier"]
    r = rng.random()
    if r < 0.18:
        return []
    if tier == "high-value":
        n = rng.randint(8, 20)
    elif tier == "potential":
        n = rng.randint(3, 10)
    else:
        n = rng.randint(1, 5)
    window_start = today - dt.timedelta(days=730)
    created = dt.date.fromisoformat(cust["created_at"])
    yesterday = today - dt.timedelta(days=1)
    # About a quarter have lapsed: nothing in the last 90 days, some long ago
    # and some just past the line. Of the rest, some lapse during the weeks
    # after `today` (last order 60-89 days before it) and the others ordered
    # within the last two months.
    r = rng.random()
    if r < 0.25:
        back = rng.randint(91, 400)
    elif r < 0.47:
        back = rng.randint(60, 89)
    else:
        back = rng.randint(1, 59)
    end = today - dt.timedelta(days=back)
    if end < created:  # a newer customer: orders only after sign-up
        end = created + dt.timedelta(days=rng.randint(0, (yesterday - created).days))
    start = max(window_start, created)
    span = (end - start).days
    days = sorted(rng.randint(0, span) for _ in range(n))
    days[-1] = span  # the last order falls on `end`
    rate = FX[cust["_currency"]]
    orders = []
    for i, day in enumerate(days):
        when = dt.datetime.combine(start + dt.timedelta(days=day), dt.time()) + dt.timedelta(
            seconds=rng.randrange(86400))
        usd = rng.uniform(12, 420 if tier == "high-value" else 180)
        amount = "%.2f" % (usd * rate)
        orders.append(("O%07d" % (first_order_id + i), amount,
                       when.strftime("%Y-%m-%dT%H:%M:%SZ")))
    return orders


def generate(n_customers, seed, today):
    rng = random.Random(seed)
    customers, orders = [], []
    used_local = set()
    next_order = 1
    for i in range(1, n_customers + 1):
        zone, cities, currency, style, _ = pick_weighted(rng, REGIONS, 4)
        name, first, local = make_name(rng, style, i)
        r = rng.random()
        tier = "high-value" if r < 0.10 else "potential" if r < 0.35 else "normal"
        has_email = rng.random() >= 0.08
        email = ""
        if has_email:
            assert local not in used_local
            used_local.add(local)
            email = "%s@%s" % (local, rng.choice(EMAIL_DOMAINS))
        created = dt.date(2018, 1, 1) + dt.timedelta(
            days=rng.randrange((today - dt.date(2018, 1, 1)).days - 14))
        cust = {
            "id": "C%06d" % i,
            "name": name,
            "first_name": first,
            "email": email,
            "phone": phone_for(rng, zone) if rng.random() < 0.95 else "",
            "birthday": make_birthday(rng),
            "tz": zone,
            "tier": tier,
            "owner": rng.choice(STAFF),
            "tags": make_tags(rng, tier, style),
            "consent_email": "yes" if has_email and rng.random() < 0.8 else "no",
            "consent_sms": "yes" if rng.random() < 0.6 else "no",
            "created_at": created.isoformat(),
            "city": rng.choice(cities),
            "_currency": currency,
        }
        customers.append(cust)
        for oid, amount, at in make_orders(rng, cust, today, next_order):
            orders.append({"customer_id": cust["id"], "order_id": oid, "amount": amount,
                           "currency": currency, "ordered_at": at})
            next_order += 1
    return customers, orders


def write_csv(path, columns, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Write deterministic demo customers.csv and "
                                 "orders.csv for nudge.")
    ap.add_argument("--customers", type=int, default=1000, help="number of customers (1000)")
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=2027, help="random seed (2027)")
    ap.add_argument("--today", default="2027-01-01",
                    help="reference date: orders end before it, lapses are measured from it "
                    "(2027-01-01)")
    args = ap.parse_args()
    if args.customers < 1:
        ap.error("--customers must be at least 1")
    try:
        today = dt.date.fromisoformat(args.today)
    except ValueError:
        ap.error("--today must be YYYY-MM-DD, got %r" % args.today)

    customers, orders = generate(args.customers, args.seed, today)
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "customers.csv"), CUSTOMER_COLUMNS, customers)
    write_csv(os.path.join(args.out, "orders.csv"), ORDER_COLUMNS, orders)

    with_orders = len({o["customer_id"] for o in orders})
    print("gen-demo-data: %d customers (%d with orders), %d orders -> %s" %
          (len(customers), with_orders, len(orders), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
