'use strict';
/*
 * render.js: the mustache.js side of tests/e2e/10-template-diff.sh.
 *
 *   NODE_PATH=/usr/share/nodejs node render.js TEMPLATE DATA.json [PARTIALS_DIR]
 *
 * Renders TEMPLATE with the JSON in DATA.json, loading partial NAME from
 * PARTIALS_DIR/NAME.mustache (missing partials render as empty), and writes
 * the result to stdout unchanged.
 *
 * mustache.js before 4.0 drops the indentation of a standalone partial tag;
 * nudge indents the partial's lines as the spec and mustache.js 4 do (see
 * lib/template.h). On 3.x this file therefore wraps the renderer so that a
 * partial tag that is the first tag on a line that mustache.js removed as
 * standalone, with whitespace before it, gets every non-empty line of the
 * partial indented by that whitespace (spaces and tabs), exactly as 4.x's
 * indentPartial() does. Everything else is mustache.js's own code.
 */
const fs = require('fs');
const path = require('path');
const Mustache = require('mustache');

const [tplPath, dataPath, partialsDir] = process.argv.slice(2);
if (!tplPath || !dataPath) {
  process.stderr.write('usage: render.js TEMPLATE DATA.json [PARTIALS_DIR]\n');
  process.exit(2);
}
const template = fs.readFileSync(tplPath, 'utf8');
const data = JSON.parse(fs.readFileSync(dataPath, 'utf8'));

function loadPartial (name) {
  if (!partialsDir || !name || name[0] === '.' || name.indexOf('/') >= 0)
    return undefined;
  try {
    return fs.readFileSync(path.join(partialsDir, name + '.mustache'), 'utf8');
  } catch (e) {
    return undefined;
  }
}

if (parseInt(Mustache.version, 10) < 4) {
  const Writer = Mustache.Writer.prototype;

  // Offsets of the template covered by text tokens that survived parsing:
  // the whitespace of a standalone line is exactly what is missing.
  const coverage = new Map();
  function covered (tpl) {
    let set = coverage.get(tpl);
    if (set) return set;
    set = new Set();
    (function walk (tokens) {
      for (const t of tokens) {
        if (t[0] === 'text')
          for (let i = t[2]; i < t[3]; i++) set.add(i);
        else if (t[0] === '#' || t[0] === '^')
          walk(t[4]);
      }
    })(Mustache.parse(tpl));
    coverage.set(tpl, set);
    return set;
  }

  function standaloneIndent (tpl, token) {
    const start = token[2];
    const lineStart = tpl.lastIndexOf('\n', start - 1) + 1;
    const prefix = tpl.slice(lineStart, start);
    if (!prefix || /\S/.test(prefix) || covered(tpl).has(start - 1))
      return '';
    return prefix.replace(/[^ \t]/g, '');
  }

  function indentPartial (partial, indentation) {
    return partial.split('\n')
      .map(function (line) { return line.length ? indentation + line : line; })
      .join('\n');
  }

  Writer.renderPartial = function (token, context, partials, tags, originalTemplate) {
    if (!partials) return;
    let value = typeof partials === 'function' ? partials(token[1]) : partials[token[1]];
    if (value == null) return;
    if (typeof originalTemplate === 'string') {
      const indent = standaloneIndent(originalTemplate, token);
      if (indent) value = indentPartial(value, indent);
    }
    return this.renderTokens(this.parse(value, tags), context, partials, value);
  };

  // 3.x's renderTokens() with the template passed on to renderPartial().
  Writer.renderTokens = function (tokens, context, partials, originalTemplate, tags) {
    let buffer = '';
    for (const token of tokens) {
      let value;
      switch (token[0]) {
        case '#': value = this.renderSection(token, context, partials, originalTemplate); break;
        case '^': value = this.renderInverted(token, context, partials, originalTemplate); break;
        case '>': value = this.renderPartial(token, context, partials, tags, originalTemplate); break;
        case '&': value = this.unescapedValue(token, context); break;
        case 'name': value = this.escapedValue(token, context); break;
        case 'text': value = this.rawValue(token); break;
      }
      if (value !== undefined) buffer += value;
    }
    return buffer;
  };
}

process.stdout.write(Mustache.render(template, data, loadPartial));
