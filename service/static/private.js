/* The private check, done in the browser (docs/design.md §7): progressive enhancement of the form.
 *
 * Without JavaScript, or when the service does not offer private lookups, this file does
 * nothing and the form posts as it always did. Otherwise it shows a "private check"
 * choice. With it ticked, submitting never sends the form: the fields are normalised
 * here exactly as indexer/identity.py and indexer/matchkeys.py do (docs/design.md §3), each
 * canonical key is hashed to its public bucket and blinded (RFC 9497, ristretto255-
 * SHA512, mode OPRF, by the vendored @noble/curves in vendor/noble-oprf.js), and only
 * {"bucket", "blinded"} pairs go to /v1/private/evaluate. The answer is unblinded,
 * finalized and looked up here; the service learns a bucket number and nothing else,
 * not even whether the person was found.
 *
 * Why a port and not a call: sending the fields to the service to be normalised would
 * defeat the point. tests/test_browser_private.py runs the docs/design.md §3 vectors and the
 * whole synthetic member file through both this file and indexer/ and requires the
 * same keys and the same error codes.
 *
 * What it must never do: send a typed value, a canonical key, a blind or an OPRF output
 * anywhere, keep one (no storage, no cookie: requests go without credentials), or write
 * one to the console.
 */
(function () {
  "use strict";

  var lib = window.nobleOprf;
  if (!lib || typeof BigInt !== "function" || typeof TextEncoder !== "function") {
    return; // an old browser: the ordinary form works without us
  }
  var oprf = lib.ristretto255_oprf.oprf;
  var SUITE = "ristretto255-SHA512";
  var MODE = "oprf";
  var BUCKET_DOMAIN = "exposure-bucket-v1|";
  var QUERY_FIELDS = ["nir", "birth_date", "last_name", "first_name"];
  // The order the fields appear in the form, hence in the error summary (service/form.py).
  var FORM_FIELDS = ["birth_date", "nir", "last_name", "first_name"];

  // ------------------------------------------------------------------ normalisation
  // A line-by-line port of indexer/identity.py; the comments there say why each rule.

  function FieldError(field, code) {
    this.field = field;
    this.code = code;
  }

  function QueryError(errors) {
    this.errors = errors;
  }

  var BLANKS = " \t\r\n\u00a0\u202f\u2007\u2009";
  var DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d";
  var APOSTROPHES = "'\u2019\u2018`\u00b4\u02bc\u02b9\uff07";
  var NIR_SEPARATORS = BLANKS + DASHES + ".";
  var NAME_SEPARATORS = BLANKS + DASHES + APOSTROPHES + ".";
  var NIR_SHAPE = /^[1-9][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?$/;
  var SEX_DIGITS = "123478";
  // Python's str.strip() whitespace (str.isspace), not JavaScript's trim(), which
  // differs on U+001C-U+001F, U+0085 and U+FEFF.
  var PY_STRIP = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
  var LETTER_FOLDS = {
    "\u00c6": "AE", "\u0152": "OE", "\u00d8": "O", "\u0110": "D", "\u0141": "L",
    "\u013f": "L", "\u00d0": "D", "\u00de": "TH", "\u1e9e": "SS"
  };

  function pyStrip(text) {
    return text.replace(PY_STRIP, "");
  }

  function withoutChars(text, chars) {
    var out = "";
    for (var ch of text) {
      if (chars.indexOf(ch) < 0) out += ch;
    }
    return out;
  }

  function validNirMonth(month) {
    return (month >= 1 && month <= 12) || (month >= 20 && month <= 42) || (month >= 50 && month <= 99);
  }

  function nirKey(first13) {
    // 2A -> 19, 2B -> 18 (the letters stay in the stored value); 13 digits overflow a
    // double, hence BigInt.
    var department = first13.slice(5, 7);
    var digits = first13;
    if (department === "2A") digits = first13.slice(0, 5) + "19" + first13.slice(7);
    else if (department === "2B") digits = first13.slice(0, 5) + "18" + first13.slice(7);
    var key = 97n - (BigInt(digits) % 97n);
    return (key < 10n ? "0" : "") + key.toString();
  }

  function normalizeNir(raw, field) {
    field = field || "nir";
    var compact = withoutChars(raw, NIR_SEPARATORS).toUpperCase();
    if (!compact) throw new FieldError(field, "required");
    if (!/^[A-Za-z0-9]+$/.test(compact)) throw new FieldError(field, "invalid_characters");
    if (compact.length !== 13 && compact.length !== 15) throw new FieldError(field, "invalid_length");
    if (SEX_DIGITS.indexOf(compact[0]) < 0) throw new FieldError(field, "invalid_sex_digit");
    if (!NIR_SHAPE.test(compact)) throw new FieldError(field, "invalid_format");
    if (!validNirMonth(parseInt(compact.slice(3, 5), 10))) throw new FieldError(field, "invalid_month");
    var key = nirKey(compact.slice(0, 13));
    if (compact.length === 13) return compact + key;
    if (compact.slice(13) !== key) throw new FieldError(field, "invalid_checksum");
    return compact;
  }

  // Python's \d is any Unicode decimal digit (category Nd), and int() reads them all.
  var ND = /^\p{Nd}$/u;
  var ISO_DATE = /^(\p{Nd}{4})-(\p{Nd}{1,2})-(\p{Nd}{1,2})$/u;
  var FRENCH_DATE = /^(\p{Nd}{1,2})([/.-])(\p{Nd}{1,2})\2(\p{Nd}{4})$/u;
  var SHORT_YEAR = /^\p{Nd}{1,2}([/.-])\p{Nd}{1,2}\1\p{Nd}{2}$/u;
  var EARLIEST_BIRTH_YEAR = 1880;

  function digitsValue(text) {
    // Unicode keeps every script's digits 0-9 in runs of ten: a digit's value is its
    // distance from the start of its run of Nd characters, modulo 10.
    var value = 0;
    for (var ch of text) {
      var cp = ch.codePointAt(0);
      var start = cp;
      while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start -= 1;
      value = value * 10 + ((cp - start) % 10);
    }
    return value;
  }

  function pad(number, width) {
    var text = String(number);
    while (text.length < width) text = "0" + text;
    return text;
  }

  function isLeap(year) {
    return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  }

  function daysIn(year, month) {
    return [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  }

  function todayParts() {
    var now = new Date();
    return [now.getFullYear(), now.getMonth() + 1, now.getDate()];
  }

  function normalizeBirthDate(raw, field, today) {
    field = field || "birth_date";
    var text = pyStrip(raw);
    if (!text) throw new FieldError(field, "required");
    var m, year, month, day;
    if ((m = ISO_DATE.exec(text))) {
      year = digitsValue(m[1]); month = digitsValue(m[2]); day = digitsValue(m[3]);
    } else if ((m = FRENCH_DATE.exec(text))) {
      day = digitsValue(m[1]); month = digitsValue(m[3]); year = digitsValue(m[4]);
    } else if (SHORT_YEAR.test(text)) {
      throw new FieldError(field, "two_digit_year");
    } else {
      throw new FieldError(field, "invalid_format");
    }
    if (year < 1 || month > 12 || day > 31) throw new FieldError(field, "invalid_date");
    if (month && day && day > daysIn(year, month)) throw new FieldError(field, "invalid_date");
    // A query date: with 00, the earliest day it can mean is what is compared.
    var now = today || todayParts();
    var earliest = [year, month || 1, day || 1];
    var later = earliest[0] !== now[0] ? earliest[0] > now[0]
      : earliest[1] !== now[1] ? earliest[1] > now[1] : earliest[2] > now[2];
    if (year < EARLIEST_BIRTH_YEAR || later) throw new FieldError(field, "out_of_range");
    return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2);
  }

  function isCombining(ch) {
    // unicodedata.combining(ch) != 0 for a decomposed character (foldName passes NFKD
    // output), without a table: canonical ordering (NFD) moves a mark of combining
    // class 1-239 before U+0345 (class 240, the highest, and the only one there), and
    // never moves a class-0 character.
    if (ch < "\u0300") return false;
    if (ch === "\u0345") return true;
    return ("\u0345" + ch).normalize("NFD") !== "\u0345" + ch;
  }

  function foldName(raw, field) {
    field = field || "last_name";
    var upper = "";
    for (var ch of raw.toUpperCase()) {
      upper += Object.prototype.hasOwnProperty.call(LETTER_FOLDS, ch) ? LETTER_FOLDS[ch] : ch;
    }
    var text = "";
    for (var part of upper.normalize("NFKD")) {
      if (!isCombining(part) && NAME_SEPARATORS.indexOf(part) < 0) text += part;
    }
    if (!text) throw new FieldError(field, "required");
    if (!/^[A-Z]+$/.test(text)) throw new FieldError(field, "invalid_characters");
    return text;
  }

  // Python's `[\s,;]+` on str (str.isspace, then the comma and the semicolon).
  var GIVEN_NAME_SPLIT = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000,;]+/;

  /** indexer.core.matchkeys.query_first_name: the first given name and all of them
   *  folded together (several given names, a hyphenated composite being one). */
  function givenNames(raw, field) {
    var names = raw.split(GIVEN_NAME_SPLIT).filter(function (token) { return token; })
      .map(function (token) { return foldName(token, field); });
    if (!names.length) throw new FieldError(field, "required");
    return { first: names[0], whole: names.join("") };
  }

  function normalizeQueryField(name, value, today) {
    if (name === "nir") return normalizeNir(value, name);
    if (name === "birth_date") return normalizeBirthDate(value, name, today);
    if (name === "first_name") return givenNames(value, name);
    return foldName(value, name);
  }

  /** indexer.core.matchkeys.canonical_keys (its strong and weak keys), or a QueryError. */
  function parseQuery(fields, today) {
    var supplied = {};
    var errors = [];
    QUERY_FIELDS.forEach(function (name) {
      var value = fields[name];
      if (value === undefined || value === null) return;
      if (typeof value !== "string") errors.push(new FieldError(name, "invalid_type"));
      else if (pyStrip(value)) supplied[name] = value;
    });
    var normal = {};
    QUERY_FIELDS.forEach(function (name) {
      if (!(name in supplied)) return;
      try {
        normal[name] = normalizeQueryField(name, supplied[name], today);
      } catch (error) {
        if (!(error instanceof FieldError)) throw error;
        errors.push(error);
      }
    });
    if (errors.length) throw new QueryError(errors);
    return completeKeys(normal);
  }

  function completeKeys(normal) {
    var keys = [];
    var date = normal.birth_date;
    if (date !== undefined) {
      if (normal.nir !== undefined) {
        keys.push({ strength: "strong", canonical: "strong|" + normal.nir + "|" + date,
                    matched_on: ["nir", "birth_date"] });
      }
      if (normal.last_name !== undefined && normal.first_name !== undefined) {
        var firsts = [normal.first_name.first];
        if (normal.first_name.whole !== normal.first_name.first) firsts.push(normal.first_name.whole);
        firsts.forEach(function (first) {
          keys.push({ strength: "weak",
                      canonical: "weak|" + normal.last_name + "|" + first + "|" + date,
                      matched_on: ["last_name", "first_name", "birth_date"] });
        });
      }
    }
    if (keys.length) return keys;
    var missing = [];
    if (date === undefined) missing.push(new FieldError("birth_date", "required"));
    if (normal.nir === undefined) {
      var hasLast = normal.last_name !== undefined;
      var hasFirst = normal.first_name !== undefined;
      if (hasLast && !hasFirst) missing.push(new FieldError("first_name", "required"));
      else if (hasFirst && !hasLast) missing.push(new FieldError("last_name", "required"));
      else if (!hasLast) missing.push(new FieldError("nir", "incomplete_key"));
    }
    throw new QueryError(missing);
  }

  // ---------------------------------------------------------------- OPRF and bucket

  var encoder = new TextEncoder();

  function utf8(text) {
    return encoder.encode(text);
  }

  function toHex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  function fromHex(text) {
    if (typeof text !== "string" || text.length % 2 || !/^[0-9a-fA-F]*$/.test(text)) {
      throw new Error("not hex");
    }
    var bytes = new Uint8Array(text.length / 2);
    for (var i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(2 * i, 2), 16);
    return bytes;
  }

  /** docs/design.md §7: SHA-256("exposure-bucket-v1|" + input), first 4 bytes big-endian,
   *  shifted right by 32 - bucket_bits (a division: `>>> 32` would shift by 0). */
  function bucketOf(canonical, bucketBits) {
    if (!Number.isInteger(bucketBits) || bucketBits < 0 || bucketBits > 32) {
      throw new RangeError("bucket_bits");
    }
    var digest = lib.sha256(utf8(BUCKET_DOMAIN + canonical));
    var prefix = digest[0] * 16777216 + digest[1] * 65536 + digest[2] * 256 + digest[3];
    return Math.floor(prefix / Math.pow(2, 32 - bucketBits));
  }

  /** RFC 9497 Blind: {blind, blinded} for input bytes. `rng` is for the RFC's test
   *  vectors only; without it the blind comes from crypto.getRandomValues. */
  function blind(input, rng) {
    var result = rng ? oprf.blind(input, rng) : oprf.blind(input);
    return { blind: result.blind, blinded: result.blinded };
  }

  /** RFC 9497 Finalize: the 64-byte output for input, blind and the evaluated element. */
  function finalize(input, blindScalar, evaluated) {
    return oprf.finalize(input, blindScalar, evaluated);
  }

  // ------------------------------------------------------------------ the service

  function ServiceError(status, retryAfter) {
    this.status = status;
    this.retryAfter = retryAfter;
  }

  function readParams(body) {
    var ok = body && body.suite === SUITE && body.mode === MODE &&
      Number.isInteger(body.bucket_bits) && body.bucket_bits >= 0 && body.bucket_bits <= 32 &&
      Number.isInteger(body.output_bytes) && body.output_bytes >= 1 && body.output_bytes <= 64 &&
      Number.isInteger(body.bucket_size) && body.bucket_size >= 1;
    if (!ok) throw new ServiceError(0, null);
    return body;
  }

  function call(url, body) {
    // No credentials: the JSON routes need none, and the form's cookie has nothing to
    // do with a private check. Never cached.
    var options = { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
                    headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      if (response.status !== 200) {
        var retry = parseInt(response.headers.get("Retry-After") || "", 10);
        throw new ServiceError(response.status, Number.isFinite(retry) ? retry : null);
      }
      return response.json();
    });
  }

  function shuffle(items) {
    // The strong and weak keys of one person go in a random order (as in
    // indexer/private_client.py), so their position says nothing.
    for (var i = items.length - 1; i > 0; i--) {
      var j = crypto.getRandomValues(new Uint32Array(1))[0] % (i + 1);
      var swap = items[i]; items[i] = items[j]; items[j] = swap;
    }
    return items;
  }

  function fits(answer, count, params) {
    if (!answer || !Array.isArray(answer.items) || answer.items.length !== count) return false;
    var width = 2 * params.output_bytes;
    return answer.items.every(function (item) {
      return item && typeof item.evaluated === "string" && item.evaluated.length === 64 &&
        Array.isArray(item.entries) && item.entries.length === params.bucket_size &&
        item.entries.every(function (e) { return typeof e === "string" && e.length === width; });
    });
  }

  /** The strongest key found ("strong", "weak") or null; ServiceError if the service
   *  refused. The parameters are fetched each time: a new index generation may have
   *  changed them, and an answer that does not fit them is asked again once. */
  function lookUp(keys, urls) {
    function attempt(left) {
      return call(urls.params).then(readParams).then(function (params) {
        var items = shuffle(keys.map(function (key, rank) {
          var input = utf8(key.canonical);
          var blinded = blind(input);
          return { key: key, rank: rank, input: input, blind: blinded.blind,
                   blinded: blinded.blinded, bucket: bucketOf(key.canonical, params.bucket_bits) };
        }));
        var body = { items: items.map(function (item) {
          return { bucket: item.bucket, blinded: toHex(item.blinded) };
        }) };
        return call(urls.evaluate, body).then(function (answer) {
          if (!fits(answer, items.length, params)) {
            if (left > 0) return attempt(left - 1);
            throw new ServiceError(0, null);
          }
          var best = null;
          items.forEach(function (item, i) {
            var got = answer.items[i];
            var output = finalize(item.input, item.blind, fromHex(got.evaluated));
            var entry = toHex(output.subarray(0, params.output_bytes));
            var entries = got.entries.map(function (e) { return e.toLowerCase(); });
            if (entries.indexOf(entry) >= 0 && (best === null || item.rank < best.rank)) best = item;
          });
          return best === null ? null : best.key.strength;
        });
      });
    }
    return attempt(1);
  }

  // ------------------------------------------------------------------------- page

  function Page(form) {
    this.form = form;
    this.texts = JSON.parse(form.getAttribute("data-texts"));
    this.urls = { params: form.getAttribute("data-private-params"),
                  evaluate: form.getAttribute("data-private-evaluate") };
    this.choice = document.getElementById("private-choice");
    this.checkbox = document.getElementById("private-mode");
    this.status = document.getElementById("private-status");
    this.answer = document.getElementById("private-answer");
    this.button = form.querySelector("button[type=submit]");
    this.busy = false;
    var prefix = this.texts.error_title_prefix;
    this.title = document.title.indexOf(prefix) === 0 ? document.title.slice(prefix.length)
      : document.title;
  }

  Page.prototype.fields = function () {
    var fields = {};
    var elements = this.form.elements;
    QUERY_FIELDS.forEach(function (name) { fields[name] = elements[name].value; });
    return fields;
  };

  Page.prototype.clear = function () {
    document.querySelectorAll(".error-summary").forEach(function (el) { el.remove(); });
    FORM_FIELDS.forEach(function (name) {
      var input = document.getElementById(name);
      var error = document.getElementById(name + "-error");
      if (error) error.remove();
      input.closest(".field").classList.remove("field-invalid");
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", name + "-hint");
    });
    this.answer.hidden = true;
    this.answer.querySelectorAll("[data-outcome], [data-when]").forEach(function (el) {
      el.hidden = true;
    });
    document.title = this.title;
  };

  /** Field errors, shown as the server shows them: inline, tied to the field, and in a
   *  summary that takes the focus. One message per field: the first problem found. */
  Page.prototype.showErrors = function (errors) {
    var catalogue = this.texts.errors;
    var messages = {};
    errors.forEach(function (error) {
      if (Object.prototype.hasOwnProperty.call(messages, error.field)) return;
      var byCode = Object.prototype.hasOwnProperty.call(catalogue, error.field)
        ? catalogue[error.field] : {};
      messages[error.field] = Object.prototype.hasOwnProperty.call(byCode, error.code)
        ? byCode[error.code] : catalogue.fallback;
    });
    var summary = document.createElement("section");
    summary.className = "error-summary";
    summary.setAttribute("aria-labelledby", "error-summary-title");
    summary.tabIndex = -1;
    var heading = document.createElement("h2");
    heading.id = "error-summary-title";
    heading.textContent = this.texts.error_summary_title;
    var list = document.createElement("ul");
    var prefix = this.texts.error_prefix;
    FORM_FIELDS.forEach(function (name) {
      if (!Object.prototype.hasOwnProperty.call(messages, name)) return;
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#" + name;
      link.textContent = messages[name];
      item.appendChild(link);
      list.appendChild(item);
      var input = document.getElementById(name);
      var message = document.createElement("p");
      message.className = "error-message";
      message.id = name + "-error";
      var hidden = document.createElement("span");
      hidden.className = "visually-hidden";
      hidden.textContent = prefix + " ";
      message.appendChild(hidden);
      message.appendChild(document.createTextNode(messages[name]));
      input.closest(".field").classList.add("field-invalid");
      input.before(message);
      input.setAttribute("aria-describedby", name + "-hint " + name + "-error");
      input.setAttribute("aria-invalid", "true");
    });
    summary.append(heading, list);
    document.querySelector("main h1").after(summary);
    document.title = this.texts.error_title_prefix + this.title;
    summary.focus();
  };

  Page.prototype.show = function (outcome, keys, retryAfter) {
    var asked = { strong: false, weak: false };
    keys.forEach(function (key) { asked[key.strength] = true; });
    var shown = this.answer.querySelector('[data-outcome="' + outcome + '"]');
    var when = {
      asked_strong: asked.strong,
      names_only: asked.weak && !asked.strong,
      nir_only: asked.strong && !asked.weak,
      retry: retryAfter !== null && retryAfter !== undefined
    };
    shown.querySelectorAll("[data-when]").forEach(function (el) {
      el.hidden = !when[el.getAttribute("data-when")];
    });
    var retry = shown.querySelector("[data-when=retry]");
    if (retry && when.retry) {
      var pattern = retryAfter === 1 ? this.texts.retry_one : this.texts.retry_many;
      retry.textContent = pattern.replace("{seconds}", String(retryAfter));
    }
    shown.hidden = false;
    this.answer.hidden = false;
    var heading = shown.querySelector("h2");
    document.title = heading.textContent + " \u2013 " + this.texts.site_name;
    heading.focus();
  };

  Page.prototype.setBusy = function (busy) {
    this.busy = busy;
    this.button.disabled = busy;
    this.status.textContent = busy ? this.texts.working : "";
  };

  Page.prototype.check = function () {
    var page = this;
    page.clear();
    var keys;
    try {
      keys = parseQuery(page.fields());
    } catch (error) {
      if (!(error instanceof QueryError)) throw error;
      page.showErrors(error.errors);
      return Promise.resolve();
    }
    page.setBusy(true);
    return lookUp(keys, page.urls).then(function (strength) {
      page.setBusy(false);
      page.show(strength === null ? "not_found" : strength, keys);
    }, function (error) {
      page.setBusy(false);
      if (error instanceof ServiceError && error.status === 429) {
        page.show("rate_limited", keys, error.retryAfter);
      } else {
        page.show("failed", keys); // never the error's text: it could hold anything
      }
    });
  };

  function enhance() {
    var form = document.querySelector("form.lookup");
    if (!form || !form.hasAttribute("data-private-params")) return; // not offered here
    var page = new Page(form);
    form.addEventListener("submit", function (event) {
      if (page.choice.hidden || !page.checkbox.checked) return; // the ordinary check
      // From here on the form is never posted, whatever happens below.
      event.preventDefault();
      if (page.busy) return;
      try {
        page.check();
      } catch (error) {
        page.setBusy(false);
        page.show("failed", []);
      }
    });
    document.getElementById("private-ordinary").addEventListener("click", function () {
      // The ordinary check of the same fields: the service sees them, and names the
      // breach and the data exposed.
      page.checkbox.checked = false;
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.submit();
    });
    // Offered only when the service answers for the index it serves.
    call(page.urls.params).then(readParams).then(function () {
      page.choice.hidden = false;
    }, function () { /* no private lookups here: the ordinary form stays as it is */ });
  }

  window.ExposurePrivate = Object.freeze({
    normalizeNir: normalizeNir,
    normalizeBirthDate: normalizeBirthDate,
    foldName: foldName,
    isCombining: isCombining,
    parseQuery: parseQuery,
    FieldError: FieldError,
    QueryError: QueryError,
    bucketOf: bucketOf,
    blind: blind,
    finalize: finalize,
    toHex: toHex,
    fromHex: fromHex,
    utf8: utf8
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", enhance);
  else enhance();
})();
