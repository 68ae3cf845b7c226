/*
 * JSON lexical helpers shared by the plugins' simdjson shims (source-http's
 * door check, transform-validate's walk): what simdjson On-Demand leaves to
 * the caller — strict number syntax, a scalar's token without trailing
 * whitespace, the byte offset of a stage-1 error, short error messages.
 * C++ only; header-only, so each plugin keeps its own copy of the code.
 */
#ifndef ECF_JSON_LEXEME_HPP
#define ECF_JSON_LEXEME_HPP

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ecf_json
{

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline const char *short_message(simdjson::error_code e)
{
    switch (e) {
    case simdjson::TAPE_ERROR: return "unexpected token";
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT: return "unterminated array or object";
    case simdjson::STRING_ERROR: return "invalid string or escape sequence";
    case simdjson::NUMBER_ERROR: return "invalid number";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR: return "invalid literal";
    case simdjson::UTF8_ERROR: return "invalid UTF-8";
    case simdjson::UNCLOSED_STRING: return "unterminated string";
    case simdjson::UNESCAPED_CHARS: return "unescaped control character in string";
    case simdjson::TRAILING_CONTENT: return "unexpected content after the JSON value";
    case simdjson::EMPTY: return "empty document";
    default: return simdjson::error_message(e);
    }
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and nothing else. */
inline bool valid_number(const void *text, size_t n)
{
    const unsigned char *p = static_cast<const unsigned char *>(text);
    size_t i = 0;
    auto digits = [&]() {
        size_t start = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        return i - start;
    };
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0')
        i++;
    else if (digits() == 0)
        return false;
    if (i < n && p[i] == '.') {
        i++;
        if (digits() == 0)
            return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (digits() == 0)
            return false;
    }
    return i == n;
}

/* The raw token of a scalar without the whitespace simdjson leaves on it. */
inline std::string_view scalar_token(std::string_view tok)
{
    size_t n = tok.size();
    while (n > 0 && is_ws((uint8_t)tok[n - 1]))
        n--;
    return tok.substr(0, n);
}

/* The offset simdjson's stage 1 cannot give, for an error `e` in p[begin,
 * end): scan by hand, only on errors. An unterminated string is blamed on
 * its opening quote; `none` when nothing is found. */
inline size_t locate_stage1(const uint8_t *p, size_t begin, size_t end, simdjson::error_code e, size_t none)
{
    bool in_string = false;
    size_t quote = begin;
    for (size_t i = begin; i < end; i++) {
        uint8_t c = p[i];
        if (e == simdjson::UTF8_ERROR && c >= 0x80) {
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            if (n == 0 || c > 0xF4 || i + n > end)
                return i;
            for (size_t k = 1; k < n; k++)
                if ((p[i + k] & 0xC0) != 0x80)
                    return i;
            uint32_t cp = (c & (0x7F >> n));
            for (size_t k = 1; k < n; k++)
                cp = (cp << 6) | (p[i + k] & 0x3F);
            if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
                return i;
            i += n - 1;
            continue;
        }
        if (!in_string) {
            if (c == '"') {
                in_string = true;
                quote = i;
            }
            continue;
        }
        if (c == '\\') {
            i++;
        } else if (c == '"') {
            in_string = false;
        } else if (c < 0x20 && e == simdjson::UNESCAPED_CHARS) {
            return i;
        }
    }
    return in_string ? quote : none;
}

/* A literal (null, true, false) at the root of a document: simdjson's
 * document getters take "null* " or "false#" for null and false (the junk
 * stuck to the word is never looked at), so the token must be the word. */
inline bool root_literal(simdjson::ondemand::document &doc)
{
    std::string_view tok;
    if (doc.raw_json_token().get(tok) != simdjson::SUCCESS)
        return false;
    tok = scalar_token(tok);
    return tok == "null" || tok == "true" || tok == "false";
}

/* simdjson 3.0 has no document::at_end(); current_location() says "out of
 * bounds" there. */
inline bool at_end(simdjson::ondemand::document &doc)
{
    const char *loc = nullptr;
    return doc.current_location().get(loc) == simdjson::OUT_OF_BOUNDS;
}

} // namespace ecf_json

#endif
