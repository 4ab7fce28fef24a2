"""The one query classifier of tracelearn (versioned).

The reference has five classifiers that disagree. tracelearn keeps the reference's classes and their order
of precedence (code, math, short, long, general) but detects code and math from syntax rather than from
bare words, so prose such as "first class service", "let me know" or "import duties" is not code.
``CLASSIFIER_VERSION`` travels with every routing table: a router must not mix tables built by different
classifier versions. docs/reference-differences.md lists every behaviour that differs from the reference
and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from learning.types import RoutingContext

CLASSIFIER_VERSION = "tl-2"

QUERY_CLASSES: tuple[str, ...] = ("code", "math", "short", "long", "general")

SHORT_BELOW = 50
LONG_ABOVE = 500

# Each code pattern has guards: punctuation the match needs (any one of them; a one-character search is
# a memchr) and words it contains (any one, searched in the lower-cased query). The regex runs only when
# both guards pass, which is rare (the classifier is on the stream's hot path). Plain ``in`` tests, because
# a regex alternation of the guard words scans a 500-character query about ten times slower.
_CODE_RULES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (chars, words, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for chars, words, pattern in (
        ("`", ("`",), r"```|`[^`]{1,200}`"),  # fenced block or inline code span (which may wrap)
        ("(", ("def",), r"\bdef\s+[A-Za-z_]\w*\s*\("),  # python function definition
        ("", ("class",), r"\bclass\s+[A-Za-z_]\w*\s*(?:\(|:|\{|extends\b|implements\b)"),  # class definition
        # import line, possibly followed by more statements after a semicolon
        ("^", ("import", "from"), r"^\s*(?:from\s+[\w.]+\s+)?import\s+[\w.]+(?:\s+as\s+\w+)?\s*(?:;.*)?$"),
        ("^", ("import",), r"^\s*import\s+[\w{}\s,*]+\s+from\s+['\"]"),  # javascript import
        ("{", ("function",), r"\bfunction\s*[A-Za-z_$]?[\w$]*\s*\([^)]*\)\s*\{"),  # js function
        ("=", ("const", "let", "var"), r"\b(?:const|let|var)\s+[A-Za-z_$][\w$]*\s*="),  # js declaration
        ("#", ("#include",), r"#include\s*[<\"]"),
        (".", ("system.out.",), r"\bSystem\.out\."),
        ("(", ("console.log",), r"\bconsole\.log\s*\("),
        ("(:", ("for",), r"\bfor\s+\w+\s+in\s+[\w.]+\s*(?:\(|:)"),  # python for loop header
        ("{", ("if",), r"\bif\s*\([^\n]*\)\s*\{"),  # c-like if block
        ("=", ("=>",), r"\w+\s*\([^()]*\)\s*=>"),  # arrow function
        # SQL: upper-case SELECT ... FROM; any case when a clause follows, or the column list is * or count(
        ("", ("select",), r"(?-i:\bSELECT\s+[^\n]+?\s+FROM\s+\w+)"),
        ("^", ("select",), r"^\s*select\s+(?:\*|count\s*\()"),
        ("^", ("select",), r"^\s*select\s+.+?\s+from\s+\w+(?:\s+\w+)?\s+(?:where|order\s+by|group\s+by|limit|join)\b"),
        ("", ("insert",), r"\binsert\s+into\s+\w+[\s\S]*\bvalues\s*\("),
        ("^", ("update",), r"^\s*update\s+\w+\s+set\s+\w+\s*="),
        ("^", ("delete",), r"^\s*delete\s+from\s+\w+"),
        ("^", ("create", "alter", "drop"), r"^\s*(?:create|alter|drop)\s+(?:table|index|view|database)\b"),
        # functions and types of Rust, Go, C, C++, Java, TypeScript, Kotlin
        ("(", ("fn",), r"\bfn\s+\w+\s*(?:<[^>]*>)?\s*\("),
        ("(", ("func",), r"\bfunc\s+(?:\([^)]*\)\s*)?\w+\s*\("),
        ("^", ("package",), r"^\s*package\s+[\w.]+\s*;?\s*$"),
        (
            "",
            ("public", "private", "protected"),
            r"\b(?:public|private|protected)\s+(?:static\s+)?(?:class|void|int|string|final)\b",
        ),
        (":", ("std::",), r"\bstd::\w+"),
        (
            "{",
            ("int", "void", "char", "float", "double", "bool"),
            r"\b(?:int|void|char|float|double|bool)\s+\*?\w+\s*\([^)]*\)\s*\{",
        ),
        ("{", ("struct", "impl", "interface", "enum"), r"\b(?:struct|impl|interface|enum)\b[^{}\n]*\{"),
        ("^", ("type",), r"^\s*type\s+\w+\s*=\s*[{(]"),
        ("^", ("val",), r"^\s*val\s+\w+\s*="),
        # Python statements
        ("(", ("print",), r"\bprint\s*\([^)]*\)"),
        ("^", ("raise",), r"^\s*raise\s+\w+(?:Error|Exception)\b"),
        ("^", ("assert",), r"^\s*assert\s+\S+\s*(?:==|!=|>=|<=)"),
        ("^", ("return",), r"^\s*return\s+\w+\("),
        (":", ("lambda",), r"\blambda\s+\w+(?:\s*,\s*\w+)*\s*:"),
        (":", ("with",), r"\bwith\s+\w+\([^)]*\)\s+as\s+\w+\s*:"),
        ("^", ("except", "try"), r"^\s*(?:try\s*:|except\b[^\n]*:)"),
        ("[{", ("for",), r"[\[{][^\]}]*\bfor\s+\w+(?:\s*,\s*\w+)?\s+in\s+[^\]}]+[\]}]"),  # comprehension
        (":", ("error",), r"\b[A-Z]\w*Error:\s"),  # an exception's message
        # a method called on an object (df.groupby(...), os.getcwd()), a statement ended by ";", i++
        ("(", (".",), r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)"),
        (";", (");",), r"\w\([^\n]*\);"),
        ("+", ("++",), r"\w\+\+|\+\+\w"),
        # shell: a prompt, a shebang, sudo, a command with an option or a pipe, a variable
        ("^", ("$",), r"^\s*\$\s+\w"),
        ("$", ("echo",), r"\becho\s+\$\w+"),
        ("#", ("#!",), r"^#!/"),
        ("^", ("sudo",), r"^\s*sudo\s+\S+"),
        (
            "^",
            (
                "git",
                "docker",
                "kubectl",
                "npm",
                "npx",
                "pip",
                "pip3",
                "yarn",
                "cargo",
                "brew",
                "apt-get",
                "apt",
                "curl",
                "wget",
                "grep",
                "ls",
                "chmod",
                "ssh",
                "tar",
            ),
            r"^\s*(?:git|docker|kubectl|npm|npx|pip3?|yarn|cargo|brew|apt-get|apt|curl|wget|grep|ls|chmod|ssh|tar)\b"
            r"[^\n]*?(?:\s-{1,2}[A-Za-z]|\|)",
        ),
        # assembly: an instruction on a register
        (
            "^",
            ("mov", "push", "pop", "jmp", "lea", "xor", "cmp"),
            r"^\s*(?:mov|push|pop|jmp|lea|xor|cmp)\s+(?:[er]?[abcd]x|[er]?[sd]i|[er]?[sb]p|r\d+|[abcd][lh])\b",
        ),
        # HTML and XML elements
        ("<", ("</", "/>"), r"<([a-z][a-z0-9]*)\b[^>]*>[\s\S]*</\1\s*>|<[a-z][a-z0-9]*\b[^>]*/>"),
        # a regular expression's character class with a range and a quantifier
        ("[", ("-",), r"\[\^?[A-Za-z0-9_\\]*[A-Za-z0-9]-[A-Za-z0-9][^\]\s]*\][+*?{]"),
    )
)

# Words that make a math query on their own: a substring test per guard (each a memchr-speed scan), and
# the regex only when one is found (most queries have none, and pay only the scans). One regex alternation
# of the words scanned a 500-character query in 67 us where the substring tests take 6.
_MATH_GUARDS = (
    "solv", "integr", "equation", "calculat", "comput", "deriv", "differentiat", "simplif", "factori", "probab",
    "prove that", "how many",
)  # fmt: skip
# words that make a math query when it has a digit too (they come with numbers: "the square root of 169")
_MATH_DIGIT_GUARDS = (
    "root", "sqrt", "prime", "taylor", "limit of", "common ", "deviation", "dot product", "log base", "divisible",
    "decimal places", "interest", "determinant", "hypotenuse", "eigen",
)  # fmt: skip
_MATH_WORDS = re.compile(
    r"\b(?:solve|integral|integrate|equation|calculate|compute|derivative|differentiate|simplify|factori[sz]e"
    r"|eigenvalues?|determinant|hypotenuse|factorial|probability|(?:square|cube)\s+root|sqrt|prime\s+number"
    r"|taylor\s+series|limit\s+of|greatest\s+common\s+divisor|least\s+common\s+multiple|standard\s+deviation"
    r"|dot\s+product|log\s+base|divisible\s+by|decimal\s+places|how\s+many\s+(?:ways|diagonals)"
    r"|compound\s+interest)\b|\bprove\s+that\b.*\b(?:even|odd|prime|number|sum|integer|root|triangle)",
    re.IGNORECASE,
)
# With a digit in the query: arithmetic in symbols or words, percentages, algebra such as "5x = 35". Every
# branch starts with a digit, so the scan skips quickly to the digits.
_ARITHMETIC = re.compile(
    r"\d\s*[-+*/^×÷]\s*\(?\s*\d"
    r"|\d\s*(?:times|plus|minus|divided\s+by|multiplied\s+by|to\s+the\s+power\s+of)\s*\d"
    r"|\d\s+(?:squared|cubed)\b|\d\s*(?:%|percent)\s+(?:of|discount|interest|off)\b|\d[a-z]\s*[-+=]",
    re.IGNORECASE,
)
# With a digit in the query: word-led forms, each behind a guard substring
_DIGIT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (guard, re.compile(pattern, re.IGNORECASE))
    for guard, pattern in (
        ("^", r"\b[a-z]\s*\^\s*\d|\)\s*\^\s*\d"),  # x^2, (a + b)^3
        ("f(", r"\bf\(\s*\d+\s*\)"),
        ("multiply", r"\bmultiply\s+\d"),
        ("convert", r"\bconvert\s+\d"),
        ("round", r"\bround\s+\d"),
        (" a ", r"\b(?:as|to)\s+a\s+(?:decimal|fraction)\b"),
        (" of ", r"\b(?:mean|median|average|sum|area|volume|slope)\s+of\b[^?\n]*\d"),
        ("perimeter", r"\bperimeter\b"),
        ("average speed", r"\baverage\s+speed\b"),
        ("how many", r"\bhow\s+many\s+(?:seconds|minutes|hours|days|weeks)\s+(?:are\s+)?in\s+\d"),
    )
)
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = "0123456789"

_REASONING = re.compile(r"\b(?:explain|analy[sz]e|compare|why|reason|think)\b|\bstep[\s-]by[\s-]step\b", re.IGNORECASE)


# (guard word, pattern) pairs
_WordRules = tuple[tuple[str, re.Pattern[str]], ...]


def _rules_by_guard() -> tuple[_WordRules, tuple[tuple[str, _WordRules], ...], dict[str, tuple[re.Pattern[str], ...]]]:
    """The code rules regrouped for the search: (word, pattern) pairs that need no punctuation, per guard
    character the pairs that need it (a rule of several words or characters appears once per each), and
    per first word of a line the patterns of the rules that match only there (guard ``"^"``)."""
    unguarded: list[tuple[str, re.Pattern[str]]] = []
    by_char: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    by_first_word: dict[str, list[re.Pattern[str]]] = {}
    for chars, words, pattern in _CODE_RULES:
        if chars == "^":
            for word in words:
                by_first_word.setdefault(word, []).append(pattern)
            continue
        pairs = [(word, pattern) for word in words]
        if not chars:
            unguarded += pairs
        for char in chars:
            by_char.setdefault(char, []).extend(pairs)
    return (
        tuple(unguarded),
        tuple((char, tuple(pairs)) for char, pairs in by_char.items()),
        {word: tuple(patterns) for word, patterns in by_first_word.items()},
    )


_UNGUARDED_RULES, _RULES_BY_CHAR, _RULES_BY_FIRST_WORD = _rules_by_guard()


# a line's first word, as the line-start rules name it: "try" of "try:", "apt" of "apt-get", or a prompt "$"
_FIRST_WORD = re.compile(r"\s*([A-Za-z_]\w*|\$)")


def _first_words(lowered: str) -> list[str]:
    """The first word of each line."""
    words = []
    for line in lowered.split("\n") if "\n" in lowered else (lowered,):
        match = _FIRST_WORD.match(line)
        if match is not None:
            words.append(match.group(1))
    return words


def _has_code(query: str, lowered: str) -> bool:
    # Grouped by guard character, a query checks each character once and skips the rules behind the absent
    # ones; looping over the rules themselves cost three times as much on a short query (the classifier runs
    # once per trace on the stream's hot path). Rules that match only at a line's start are looked up by the
    # lines' first words: a dictionary lookup instead of a substring scan per rule.
    for word in _first_words(lowered):
        for pattern in _RULES_BY_FIRST_WORD.get(word, ()):
            if pattern.search(query) is not None:
                return True
    for word, pattern in _UNGUARDED_RULES:
        if word in lowered and pattern.search(query) is not None:
            return True
    for char, rules in _RULES_BY_CHAR:
        if char in query:
            for word, pattern in rules:
                if word in lowered and pattern.search(query) is not None:
                    return True
    return False


def _contains_any(text: str, needles: Iterable[str]) -> bool:
    # a plain loop: any() over a generator costs about twice as much on these short loops
    for needle in needles:  # noqa: SIM110
        if needle in text:
            return True
    return False


def _has_math(query: str, lowered: str) -> bool:
    if _contains_any(lowered, _MATH_GUARDS) and _MATH_WORDS.search(query) is not None:
        return True
    if not _has_digit(query):
        return False
    if _ARITHMETIC.search(query) is not None:
        return True
    if _contains_any(lowered, _MATH_DIGIT_GUARDS) and _MATH_WORDS.search(query) is not None:
        return True
    for guard, pattern in _DIGIT_RULES:  # noqa: SIM110  # a loop: any() over a generator costs twice as much
        if guard in lowered and pattern.search(query) is not None:
            return True
    return False


def _has_digit(query: str) -> bool:
    # ten substring scans beat one regex scan for \d (Unicode digit classes per character); a non-ASCII
    # query may hold digits of other scripts, which only the regex sees
    if not query.isascii():
        return _DIGIT.search(query) is not None
    return _contains_any(query, _ASCII_DIGITS)


def has_code(query: str) -> bool:
    """True if the query contains code syntax (not merely a programming word)."""
    return _has_code(query, query.lower())


def has_math(query: str) -> bool:
    """True if the query asks to solve or calculate something, or contains arithmetic."""
    return _has_math(query, query.lower())


def has_reasoning(query: str) -> bool:
    """True if the query asks for explanation or step-by-step reasoning."""
    return _REASONING.search(query) is not None


def classify_query(query: str) -> str:
    """Classify a query into one of :data:`QUERY_CLASSES`; the first matching rule wins."""
    lowered = query.lower()
    if _has_code(query, lowered):
        return "code"
    if _has_math(query, lowered):
        return "math"
    if len(query) < SHORT_BELOW:
        return "short"
    if len(query) > LONG_ABOVE:
        return "long"
    return "general"


def build_routing_context(query: str, *, urgency: float = 0.5) -> RoutingContext:
    """Populate a RoutingContext from a raw query string."""
    return RoutingContext(
        query=query,
        query_length=len(query),
        has_code=has_code(query),
        has_math=has_math(query),
        urgency=urgency,
        metadata={"classifier_version": CLASSIFIER_VERSION, "has_reasoning": has_reasoning(query)},
    )
