#!/usr/bin/python3
"""run.py: runs the official Mustache spec's core modules through `nudgectl render`.

    /usr/bin/python3 run.py NUDGECTL [SPEC_DIR]

For every case of the six core module files in SPEC_DIR (default: this
script's directory) it writes the template, the data (as JSON, whatever its
type) and the partials (PARTIALS/NAME.mustache, the name convention of
`nudgectl render --partials`) to a temporary directory, runs

    NUDGECTL render TEMPLATE --data DATA.json --partials PARTIALS

and compares standard output with the case's `expected` byte for byte. Each
failing case is printed with its expected and actual output (repr()), then a
summary line "N passed, M failed". The exit status is non-zero on any failure
or if a module file is missing, so the test cannot pass by finding nothing.
"""
import json
import os
import subprocess
import sys
import tempfile

MODULES = ["comments", "delimiters", "interpolation", "inverted", "partials", "sections"]


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: run.py NUDGECTL [SPEC_DIR]\n")
        return 2
    ctl = sys.argv[1]
    spec_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="nudge-mustache-spec.") as work:
        for module in MODULES:
            path = os.path.join(spec_dir, module + ".json")
            try:
                with open(path, encoding="utf-8") as f:
                    tests = json.load(f)["tests"]
            except (OSError, ValueError, KeyError) as e:
                print("FAIL %s: cannot load the spec file: %s" % (path, e))
                failed += 1
                continue
            for i, case in enumerate(tests):
                d = os.path.join(work, "%s-%03d" % (module, i))
                pdir = os.path.join(d, "partials")
                os.makedirs(pdir)
                tpl = os.path.join(d, "template.mustache")
                data = os.path.join(d, "data.json")
                # newline="" keeps \r\n exactly as the spec writes it.
                with open(tpl, "w", encoding="utf-8", newline="") as f:
                    f.write(case["template"])
                with open(data, "w", encoding="utf-8") as f:
                    json.dump(case["data"], f, ensure_ascii=False)
                for name, text in case.get("partials", {}).items():
                    with open(os.path.join(pdir, name + ".mustache"), "w", encoding="utf-8",
                              newline="") as f:
                        f.write(text)
                p = subprocess.run([ctl, "render", tpl, "--data", data, "--partials", pdir],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                got = p.stdout.decode("utf-8", "replace")
                label = "%s: %s" % (module, case["name"])
                if p.returncode == 0 and got == case["expected"]:
                    passed += 1
                    continue
                failed += 1
                print("FAIL %s" % label)
                print("    template: %r" % case["template"])
                print("    data:     %s" % json.dumps(case["data"], ensure_ascii=False))
                if case.get("partials"):
                    print("    partials: %s" % json.dumps(case["partials"], ensure_ascii=False))
                print("    expected: %r" % case["expected"])
                print("    got:      %r" % got)
                if p.returncode != 0:
                    print("    exit %d: %s" % (p.returncode,
                                             p.stderr.decode("utf-8", "replace").strip()))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
