from flagstone.conditions import compile_condition, iter_condition, segments_in, terms
from flagstone.diff import condition_words, plain

NESTED = {
    "plan": "pro",
    "age": {"gte": 18, "lt": 65},
    "any": [{"segment": "beta"}, {"not": {"country": {"in": ["DE", "FR"]}}}],
}


def test_terms__read_one_level_in_the_order_written() -> None:
    assert list(terms(NESTED)) == [
        ("plan", "eq", "pro"),
        ("age", "gte", 18),
        ("age", "lt", 65),
        ("any", "any", NESTED["any"]),
    ]


def test_iter_condition__yields_every_leaf_with_its_document_path() -> None:
    assert list(iter_condition(NESTED, ("rules", 0, "when"))) == [
        ("eq", "pro", ("rules", 0, "when", "plan")),
        ("gte", 18, ("rules", 0, "when", "age", "gte")),
        ("lt", 65, ("rules", 0, "when", "age", "lt")),
        ("segment", "beta", ("rules", 0, "when", "any", 0, "segment")),
        ("in", ["DE", "FR"], ("rules", 0, "when", "any", 1, "not", "country", "in")),
    ]
    assert list(iter_condition("not a mapping")) == []


def test_segments_in__finds_references_at_any_depth() -> None:
    assert segments_in(NESTED) == {"beta"}
    assert segments_in({"all": [{"not": {"segment": "a"}}, {"segment": "b"}]}) == {"a", "b"}
    assert segments_in(None) == set()


def test_compile_and_words__read_the_same_grammar() -> None:
    assert compile_condition(NESTED) == {
        "all": [
            {"attr": "plan", "op": "eq", "value": "pro"},
            {"attr": "age", "op": "gte", "value": 18},
            {"attr": "age", "op": "lt", "value": 65},
            {
                "any": [
                    {"segment": "beta"},
                    {"not": {"attr": "country", "op": "in", "value": ["DE", "FR"]}},
                ]
            },
        ]
    }
    words = plain(condition_words(NESTED))
    assert (
        words
        == "plan = pro and age ≥ 18 and age < 65 and (in segment beta or not (country in DE, FR))"
    )
