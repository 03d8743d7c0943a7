"""Put a task into a fixed (category, subcategory) taxonomy, deterministically and cheaply.

MemCollab retrieves only memory entries of the task's category, so the *same* function must tag
training problems when a bank is built and evaluation problems when it is read. It is a fixed
keyword/regex scorer (no model, no fitted weights): reproducible, fast, and its mistakes are the
same at build and evaluation time. Math categories are the 7 MATH subjects: MATH's own label when
given, else predicted from the text (GSM8K, unlabeled text). Keywords were written against the MATH
*train* split only; tests/test_categorize.py measures train and MATH500 subject accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GENERAL = "general"

# Subcategory keywords shared by two categories.
_RATES = r"\bratio | \brate | \bper\b | \bspeed | \bmph | \bproportion | \btwice as | \bfaster"
_PERCENT = r"\bpercent\w* | % | \bdiscount | \binterest | \btax | \bmarkup"
_MONEY = (r"\$\d[\d,]*(?:\.\d+)?(?![\w$^]) | \\\$ | \bdollars? | \bcents? | \bcosts? | \bprice | \bpays? | \bpaid"
          r" | \bsells? | \bprofit | \bearn")
_ANGLES = r"\bangles? | \bdegrees? | \\angle | \bsupplementary | \bcomplementary"
_AREA = r"\barea | \bperimeter | \bsquare units | \brectangle | \bsquare"
_COMPLEX = r"\bcomplex | \bimaginary | \|z\| | \bcis | \bconjugate"

# domain -> category -> subcategory -> keywords ("regex | regex | ...", each counts 1 when it
# occurs; a (weight, keywords) pair overrides the weight). This literal IS the taxonomy: the
# order of subcategories is the tie-break order, and GENERAL is appended to every category for
# texts where no keyword fires. Fixed: a bank's tags only mean something against this taxonomy.
_SUBCATEGORY_RULES: dict[str, dict[str, dict[str, str | tuple[float, str]]]] = {
    "math": {
        "Algebra": {
            "linear equations": r"\blinear | \bsolve for | \bequation | \bvalue of",
            "systems of equations": r"\bsystem | \bsimultaneous | \\begin\{align | \band \$[a-z] ?[+-]",
            "quadratics": r"\bquadratic | [a-z]\^2 | \bdiscriminant | \bcomplet\w+ the square",
            "functions": r"\bfunction | \bf\( | \bdomain | \brange | \binverse | \bf\^\{-1\}",
            "exponents and radicals": r"\\sqrt | \bexponent | \^\{?\d | \bradical | \broot of",
            "arithmetic and geometric sequences": r"\barithmetic sequence | \bgeometric sequence | \bterm",
            "lines and coordinates": r"\bslope | \bintercept | \bmidpoint | \bline | \bdistance | \bcoordinates?",
            "inequalities and absolute value": r"\binequalit\w* | \babsolute value | \|[a-z] | \\le | \\ge | <|>",
            "rates and ratios": _RATES, "percentages": _PERCENT, "money": _MONEY,
        },
        "Counting & Probability": {
            "probability": r"\bprobability | \bchance | \bodds | \bat random | \brandomly",
            "permutations and arrangements": r"\barrange\w* | \bpermutations? | \border | \bline up | \bseated",
            "combinations": r"\bchoose | \bcombinations? | \bcommittee | \bselect | \bsubsets?",
            "binomial coefficients": r"\\binom | \bpascal | \bbinomial | \bcoefficient",
            "expected value": r"\bexpected | \bexpectation | \bon average",
            "casework and complements": r"\bat least | \bat most | \bnot\b | \bneither | \bcomplement",
        },
        "Geometry": {
            "triangles": r"\btriangles? | \\triangle | \bhypotenuse | \bright angle | \bisosceles | \bequilateral",
            "circles": r"\bcircles? | \bradius | \bdiameter | \bchord | \barc\b | \btangent | \bcircumference",
            "polygons and quadrilaterals": r"\bpolygon | \bhexagon | \boctagon | \bpentagon | \btrapezoid"
                                           r" | \bparallelogram | \brhombus | \bsquare",
            "solids and volume": r"\bvolume | \bcube | \bcylinder | \bcone | \bsphere | \bprism | \bpyramid"
                                 r" | \bsurface area",
            "coordinate geometry": r"\bcoordinates? | \bplane | \bx-axis | \by-axis | \(-?\d+, ?-?\d+\)",
            "angles": _ANGLES, "area and perimeter": _AREA,
        },
        "Intermediate Algebra": {
            "polynomials and roots": r"\bpolynomial | \broots? | \bzeros? | \bfactor | \bdegree | \bcubic | \bmonic",
            "inequalities and optimization": r"\bminimum | \bmaximum | \binequalit\w* | \bpositive real",
            "functional equations": r"\bf\(xy\) | \bf\(x ?\+ ?y\) | \bfor all real | \bfunctional | \bf\(f\(",
            "conic sections": r"\bellipse | \bhyperbola | \bparabola | \bfoci | \bfocus | \bdirectrix | \basymptote",
            "series and sequences": r"\\sum | \bseries | \bsequence | \\infty | \\cdots | \\dots",
            "complex numbers": _COMPLEX,
            "logarithms and exponentials": r"\\log | \blogarithm | \bexponential | \\ln",
            "rational expressions": r"\\frac\{[^}]*x | \brational | \bpartial fraction | \basymptote",
        },
        "Number Theory": {
            "modular arithmetic and remainders": r"\bremainder | \bmod | \\equiv | \bcongruen\w*",
            "primes and factorization": r"\bprimes? | \bfactorization | \bprime factors?",
            "gcd and lcm": r"\bgcd | \blcm | \bgreatest common | \bleast common",
            "number bases": r"\bbase | \d_\{?\d+\}?",
            "digits": r"\bdigits? | \bunits digit | \bones digit | \bdecimal representation",
            "divisors": r"\bdivisors? | \bfactors? | \bdivisible | \bmultiples?",
        },
        "Prealgebra": {
            "percentages": _PERCENT, "rates and ratios": _RATES, "money": _MONEY,
            "time": r"\bhours? | \bminutes? | \bdays? | \bweeks? | \bmonths? | \byears? | \bclock | \bo'clock",
            # A catch-all: half weight, so that any more specific subcategory that fires wins.
            "counting and totals": (0.5, r"\bhow many | \btotal | \bin all | \baltogether | \bleft\b | \bremaining"
                                         r" | \beach"),
            "fractions and decimals": r"\\frac | \bfractions? | \bdecimals? | \bhalf | \bthird | \bquarter",
            "averages": r"\baverage | \bmean | \bmedian | \bmode\b",
            "unit conversion": r"\binch\w* | \bfeet | \bfoot | \byards? | \bmeters? | \bgallons? | \bpounds?"
                               r" | \bounces?",
            "angles": _ANGLES, "area and perimeter": _AREA,
            "arithmetic": r"\bcompute | \bevaluate | \bsimplify | \bproduct | \bsum | \\cdot | \\times | \\div",
        },
        "Precalculus": {
            "trigonometry": r"\\sin | \\cos | \\tan | \\cot | \\sec | \\csc | \\arc | \bradians",
            "vectors": r"\bvectors? | \\mathbf | \bprojection | \bdot product | \bcross product",
            "matrices and determinants": r"\bmatri\w+ | \bpmatrix | \bdeterminant | \bvmatrix",
            "complex numbers": _COMPLEX,
            "coordinate systems": r"\bpolar | \bspherical | \bcylindrical | \brectangular coordinates",
            "lines and planes in space": r"\bplane | \bparametri\w* | \bline | \(-?\d+, ?-?\d+, ?-?\d+\)",
        },
    },
    "code": {
        "string manipulation": {
            "character filtering": r"\bremove | \bcharacters? | \bvowels? | \bwhitespace | \bspaces? | \bdelete"
                                   r" | \bfilter",
            "case and formatting": r"\bupper\w* | \blower\w* | \bcase | \bcapitaliz\w* | \bcamel | \bsnake | \btoggle",
            "palindromes and reversal": r"\bpalindrom\w* | \breverse\w* | \brotat\w*",
            "substrings": r"\bsubstrings? | \bprefix | \bsuffix | \bstarts? with | \bends? with | \boccurrences?",
            "counting characters": r"\bcount | \bfrequenc\w* | \bnumber of (?:characters|vowels|words)",
        },
        "list/array processing": {
            "filtering and mapping": r"\bfilter | \bremove | \bmap | \blambda | \bextract | \bconvert",
            "aggregation": r"\bsum | \bproduct | \baverage | \bmean | \bcount | \btotal",
            "indexing and slicing": r"\bindex | \bposition | \bfirst | \blast | \bnth | \bslice | \bsplit",
            "nested lists and matrices": r"\bnested | \blist of lists | \bmatrix | \bsublists? | \bflatten | \bcolumn",
            "tuples": r"\btuples? | \brecords?",
            "pairs and windows": r"\bpairs? | \bconsecutive | \badjacent | \bwindow | \bsubarray",
        },
        "math/number theory": {
            "primes and divisors": r"\bprimes? | \bdivisors? | \bfactors? | \bdivisible | \bgcd | \blcm",
            "digits": r"\bdigits? | \bunits digit | \blast digit | \bfirst digit",
            "sequences and series": r"\bseries | \bsequence | \bnth | \bfibonacci | \bterms?",
            "bit manipulation": r"\bbits? | \bbitwise | \bbinary | \bxor | \bset bits | \btoggle",
            "geometry formulas": r"\barea | \bvolume | \bperimeter | \bsurface | \btriangle | \bcircle | \bcylinder"
                                 r" | \bcube",
            "number conversion": r"\bconvert | \bbase | \bdecimal | \boctal | \bhexadecimal | \broman | \bdegrees? to",
        },
        "data structures": {
            "dictionaries": r"\bdictionar\w* | \bdict\b | \bkeys? | \bvalues?",
            "sets": r"\bsets? | \bunique | \bdistinct | \bduplicates? | \bcommon elements",
            "heaps and priority queues": r"\bheaps? | \bheapq | \bpriority queue | \bk smallest | \bk largest",
            "stacks and queues": r"\bstack | \bqueue | \bdeque | \bbalanced",
            "linked structures": r"\blinked list | \btree | \bnode | \bgraph",
        },
        "sorting/searching": {
            "sorting": r"\bsort\w* | \border",
            "binary search": r"\bbinary search | \bsorted array | \bsearch",
            "min and max selection": r"\bmin\w* | \bmax\w* | \bsmallest | \blargest",
        },
        "recursion/dynamic programming": {
            "recursion": r"\brecurs\w* | \bnested",
            "dynamic programming": r"\blongest | \bsubsequence | \bminimum cost | \bmaximum sum | \bknapsack"
                                   r" | \bdynamic",
            "combinatorics": r"\bways | \bpaths? | \bpermutations? | \bcombinations? | \bcatalan | \bpartition",
        },
        "regex/parsing": {
            "regular expressions": r"\bregex | \bregular expression | \bmatch\w* | \bpattern",
            "parsing and tokenizing": r"\bparse | \bsplit | \bextract | \btokens? | \bparenthes\w+ | \bbrackets?",
            "validation": r"\bvalid | \bcheck whether | \bcheck if | \bis valid",
        },
    },
}

# domain ("math"/"code") -> category -> subcategories (GENERAL last). Derived from the rules above.
TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {
    domain: {cat: (*subs, GENERAL) for cat, subs in cats.items()} for domain, cats in _SUBCATEGORY_RULES.items()
}
MATH_SUBJECTS: tuple[str, ...] = tuple(TAXONOMY["math"])
CODE_CATEGORIES: tuple[str, ...] = tuple(TAXONOMY["code"])

# Category keywords, as (weight, "regex | regex | ..."): every regex that occurs adds its weight once.
_R = tuple[tuple[float, str], ...]

MATH_SUBJECT_RULES: dict[str, _R] = {
    "Algebra": (
        (1.5, r"\bslope | y-intercept | \bline (?:through|containing|passing) | distance between the points | \\lceil"),
        (1.5, r"\bdomain of | \brange of | f\^\{-1\} | \binverse function | f\(g\( | g\(f\( | \bsystem of"),
        (1.2, r"\bquadratic | complet\w+ the square | \barithmetic sequence | \bgeometric sequence | \bsolve for"),
        (1.0, r"\bexpand | \bfactor (?:the|completely) | \bcompounded | \\sqrt\[3\] | \binterval notation | \\lfloor"),
        (1.5, r"\binterest"),
        (0.8, r"\bequation | \bvalue of \$[a-z]\$ | \bevaluate | [a-z]\^2 | \by ?= | \bgraph"),
    ),
    "Counting & Probability": (
        (3.0, r"\bprobability | how many (?:different )?ways | in how many | \\binom | \bpermutations?"),
        (2.0, r"\barrange | \barrangements? | \bcommittee | \bexpected value | \bat random | \brandomly | \bpascal"),
        (3.0, r"\bcombinations?"),
        (1.5, r"\bdice | \bdie | \bcoins? | \bdeck | \bcards? | \bchoose | \bchosen | \bselect | \boutcomes?"),
        (1.2, r"\bdistinguishable | \bindistinguishable | \bpaths | \bseated | \bsit | \bfactorial | \d!"),
        (0.8, r"how many (?:different|distinct|possible) | \bteams? | \bflips? | \bballs | \bboxes"),
    ),
    "Geometry": (
        (2.0, r"\\triangle | \\angle | \bcircles? | \bradius | \bdiameter | \bchord | \binscribed | \bcircumscribed"),
        (2.0, r"\bcylinder | \bcone | \bsphere | \bprism | \bpyramid | \bhemisphere | \btrapezoid | \bparallelogram"),
        (1.5, r"\btriangles? | \bhypotenuse | \baltitude | \bhexagon | \boctagon | \bpentagon | \bcubic units"),
        (1.2, r"\\overline | \bcongruent | \bsimilar | \bperpendicular | \bparallel | \bvolume | \bsurface area"),
        (1.2, r"tangent"),
        (0.8, r"\barea | \bperimeter | \bvertices | \bsquare units | \\pi | \[asy\] | \bsegment | \bmidpoint"),
    ),
    "Intermediate Algebra": (
        (2.0, r"\bpolynomials? | \bellipse | \bhyperbola | \bfoci | \bfocus | \bdirectrix | \basymptotes? | \bmonic"),
        (2.0, r"\\log | \blogarithm | \\sum | \\infty | \bpartial fraction | \bquartic | \bpositive real numbers"),
        (1.5, r"(?:minimum|maximum) (?:possible )?value | real numbers such that | \bcomplex numbers? | \|z\|"),
        (1.5, r"\bremainder when \$[^$]*x | [a-z]\^\{?[3-9]\}? | \\dots | \broots | f\(xy\) | f\(x ?\+ ?y\)"),
        (1.0, r"\bparabola | \binequality | \\ge | \\le | \\\[ | \breal"),
    ),
    "Number Theory": (
        (3.0, r"\bremainder | \bmodulo | \\pmod | \\equiv | \bgreatest common (?:divisor|factor) | \bgcd | \blcm"),
        (2.0, r"\bleast common multiple | \bbase[- ]\d | \d_\{?\d+\}? | \bdivisible | \bdivisors? | \bunits digit"),
        (1.5, r"\bprimes? | \bdigits? | \bmultiples? of | \bfactors | \brepeating decimal | \bterminat\w+ decimal"),
        (1.0, r"\bpositive integer | \binteger | \bperfect squares? | \bperfect cubes? | \bsum of the digits"),
    ),
    "Prealgebra": (
        (1.5, r"\bpercent | \\% | \baverage | \bmean | \bmedian | \bnearest (?:tenth|hundredth|whole) | \\div"),
        (1.0, r"\bdollars | \bminutes | \bmiles | \bdegrees | \bmixed number | \bstudents | \bclass"),
        (0.6, r"\bhow many | \bmeasure"),
    ),
    "Precalculus": (
        (3.0, r"\\sin | \\cos | \\tan | \\cot | \\sec | \\csc | \\arcsin | \\arccos | \\arctan | \bpmatrix | \bmatrix"),
        (2.5, r"\bvectors? | \\mathbf | \bdeterminant | \bprojection | \bdot product | \bcross product"),
        (2.0, r"\bpolar | \bspherical | \brectangular coordinates | \\theta | \bradians | e\^\{.*i"),
        (1.5, r"\bplane | \bparametri\w* | \bdilation | \\operatorname | \broots of unity | \\times"),
        (1.0, r"\(\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*\) | \bparallelepiped | \breflection"),
    ),
}
# Answer-format boilerplate says nothing about the topic ("relatively prime" in a geometry
# answer) and is removed before scoring.
_BOILERPLATE = re.compile(
    r"express your answer[^.]*\.?|relatively prime|not divisible by the square of any prime|"
    r"simplest (?:radical )?form|as a common fraction|in terms of \$?\\pi\$?", re.IGNORECASE)
MATH_SUBJECT_PRIOR: dict[str, float] = {"Algebra": 0.6, "Prealgebra": 0.5}
WORD_PROBLEM_BONUS: dict[str, float] = {"Prealgebra": 2.0}

CODE_CATEGORY_RULES: dict[str, _R] = {
    "string manipulation": (
        (2.0, r"\bstrings? | \bcharacters? | \bchars? | \bsubstrings? | \bwords? | \bsentence | \bvowels?"),
        (2.0, r"\bletters?"),
        (1.5, r"\buppercase | \blowercase | \bupper case | \blower case | \bpalindrom\w* | \bspaces? | \bstr\b"),
        (0.8, r"\bconcatenat\w* | \breverse | \bprefix | \bsuffix | \bcamel | \bsnake | \bascii | \balphabet"),
    ),
    "list/array processing": (
        (1.5, r"\blists? | \barrays? | \btuples? | \bList\["),
        (0.8, r"\belements? | \bsublists? | \bmatrix | \bitems? | \bconsecutive | \bpairs? | \bzip | \bmap function"),
    ),
    "math/number theory": (
        (2.0, r"\bprimes? | \bdivisors? | \bfactorial | \bgcd | \bgreatest common | \blcm | \bfibonacci | \bdigits?"),
        (2.0, r"\barea | \bvolume | \bperimeter | \bsurface area | \bcircumference | \btriangle | \bcylinder | \bcube"),
        (1.0, r"\bdivisible | \bsquare | \bpower | \bbits? | \bbinary | \bnth | \bseries | \bsequence | \bmodulo"),
        (0.5, r"\bnumbers? | \bintegers? | \bint | \bfloat | \beven | \bodd | \bsum of | \bproduct | \bdecimal"),
        (0.5, r"\bbase"),
    ),
    "data structures": (
        (3.5, r"\bdictionar\w* | \bdict\b | \bheaps? | \bheapq | \bstack | \bqueue | \blinked list | \bdeque"),
        (2.0, r"\bsets | \b(?:a|the) set\b | \bhash | \bkeys? | \bvalues | \bcounter | \bfrequency | \bduplicates?"),
        (1.0, r"\bunique"),
    ),
    "sorting/searching": (
        (4.0, r"\bsort\w* | \bbinary search | \bsearch"),
        (1.5, r"\bsmallest | \blargest | \bminimum | \bmaximum | \bk(?:th)? (?:smallest|largest) | \bmax | \bmin"),
        (1.0, r"\bfind the index | \bposition | \brotated"),
    ),
    "recursion/dynamic programming": (
        (3.0, r"\brecurs\w* | \bdynamic programming | \blongest (?:common|increasing|palindromic) | \bsubsequence"),
        (2.0, r"\bways to | \bnumber of ways | \bpaths? | \bcoin | \bknapsack | \bpartition | \bpermutations?"),
        (1.0, r"\bcombinations? | \bsubsets? | \bminimum cost | \bmaximum sum | \bcatalan | \bbell number | \btiles?"),
    ),
    "regex/parsing": (
        (4.0, r"\bregex | \bregular expression | \bmatch(?:es)? a (?:string|word) | \bpattern"),
        (2.0, r"\bparse | \bparenthes\w+ | \bbrackets? | \burl | \bemail | \bip address | \bdate | \bvalid"),
    ),
}

# With no keyword at all, a code task is most often a small computation.
CODE_CATEGORY_PRIOR: dict[str, float] = {"math/number theory": 0.1}


@dataclass(frozen=True)
class Category:
    category: str
    subcategory: str


_Compiled = dict[str, tuple[tuple[object, float], ...]]  # name -> ((phrases tuple | regex, weight), ...)
_PLAIN = re.compile(r"\\b([a-z' -]+?)(s\?)?")


def _compile(rules: dict[str, _R]) -> _Compiled:
    """Split each rule on " | " into separately scored keywords. Plain words/phrases (with an
    optional plural ``s?``) become substring tests on the text's space-joined words, ~20x cheaper
    than a regex search; anything else stays a case-insensitive regex."""
    out: _Compiled = {}
    for name, rule_list in rules.items():
        pats: list[tuple[object, float]] = []
        for weight, raw in ((w, r.strip()) for w, alts in rule_list for r in alts.split(" | ")):
            plain = _PLAIN.fullmatch(raw)
            if plain:
                phrase = " " + " ".join(re.findall(r"[a-z0-9']+", plain.group(1))) + " "
                pats.append(((phrase, phrase[:-1] + "s ") if plain.group(2) else (phrase,), weight))
            else:
                pats.append((re.compile(raw, re.IGNORECASE), weight))
        out[name] = tuple(pats)
    return out


_MATH, _CODE = _compile(MATH_SUBJECT_RULES), _compile(CODE_CATEGORY_RULES)
_SUB = {(domain, cat): _compile({n: (r if isinstance(r, tuple) else (1.0, r),) for n, r in subs.items()})
        for domain, cats in _SUBCATEGORY_RULES.items() for cat, subs in cats.items()}


def _subject_key(subject: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[^a-z]+", " ", subject.lower().replace("&", " and ")).split())


_SUBJECT_BY_KEY = {_subject_key(name): name for name in MATH_SUBJECTS}


def _words(text: str) -> str:  # lower-cased words, space-joined and padded, for phrase tests
    return " " + " ".join(re.findall(r"[a-z0-9']+", text.lower())) + " "


def _score(text: str, rules: _Compiled, names: tuple[str, ...], prior: dict[str, float]) -> dict[str, float]:
    """Sum the weights of the keywords that occur (presence, not counts: a long problem that
    repeats a word is not more about it)."""
    words = _words(text)
    scores = {}
    for n in names:
        total = prior.get(n, 0.0)
        for pat, w in rules[n]:
            if any(p in words for p in pat) if isinstance(pat, tuple) else pat.search(text):
                total += w
        scores[n] = total
    return scores


def _argmax(scores: dict[str, float], order: tuple[str, ...]) -> str:
    """Highest score; ties go to the earlier name in ``order`` (deterministic)."""
    return max(order, key=lambda n: (scores[n], -order.index(n)))


def subcategory(text: str, domain: str, category: str) -> str:
    """The subcategory of ``category`` whose keywords fire most (GENERAL when none does); also
    used under the LLM categorizer (categorize_llm), which picks the category only."""
    subs = TAXONOMY[domain][category][:-1]  # all but GENERAL
    scores = _score(text, _SUB[(domain, category)], subs, {})
    best = _argmax(scores, subs)
    return best if scores[best] > 0 else GENERAL


def code_text(text: str) -> str:
    """The descriptive part of a code task. For a HumanEval prompt: the signature (function name
    split into words, type hints) and docstring, without doctest lines and imports (every prompt
    imports ``List``, which says nothing about the task). MBPP's ``text`` passes through."""
    if "def " not in text:
        return text
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(re.sub(r"^def\s+(\w+)", lambda m: m.group(1).replace("_", " "), line)
                     for line in lines if not line.startswith((">>>", "from ", "import ")))


def predict_math_subject(text: str, *, word_problem: bool = False) -> str:
    """Predict the MATH subject of a problem text. ``word_problem`` (GSM8K) favours Prealgebra,
    where MATH files its plain-arithmetic word problems."""
    prior = {n: MATH_SUBJECT_PRIOR.get(n, 0.0) + (WORD_PROBLEM_BONUS.get(n, 0.0) if word_problem else 0.0)
             for n in MATH_SUBJECTS}
    return _argmax(_score(_BOILERPLATE.sub(" ", text), _MATH, MATH_SUBJECTS, prior), MATH_SUBJECTS)


def categorize(text: str, *, domain: str, benchmark: str = "", subject: str | None = None) -> Category:
    """Category and subcategory of one task; the same inputs always give the same output.

    ``domain`` is "math" or "code". For math, a given ``subject`` (MATH's label, any common
    spelling) is the category; otherwise it is predicted from the text. ``benchmark`` only sets
    the prior: GSM8K problems are arithmetic word problems.
    """
    if domain == "math":
        if subject:
            category = _SUBJECT_BY_KEY.get(_subject_key(subject))
            if category is None:
                raise ValueError(f"unknown MATH subject {subject!r}; expected one of {', '.join(MATH_SUBJECTS)}")
        else:
            category = predict_math_subject(text, word_problem=benchmark.lower().startswith("gsm"))
        return Category(category, subcategory(text, "math", category))
    if domain == "code":
        body = code_text(text)
        category = _argmax(_score(body, _CODE, CODE_CATEGORIES, CODE_CATEGORY_PRIOR), CODE_CATEGORIES)
        return Category(category, subcategory(body, "code", category))
    raise ValueError(f"unknown domain {domain!r}; expected 'math' or 'code'")
