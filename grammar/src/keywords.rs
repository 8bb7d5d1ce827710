//! Every keyword of the language, once: where it stands, what it means (hover) and how it is
//! written (completion). The error-recovering chunker, the language server's completion,
//! hover and semantic tokens read this table; a test holds it equal to the grammar's `kw_`
//! rules.

/// Where a keyword stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Starts a top-level item: `use`, `task`, `let`, `workflow`, `matrix`.
    Item,
    /// Starts a statement of a workflow: `data`, `model`, `train`, ...
    Statement,
    /// Inside an item or statement: `on`, `as`, `over`, `extends`.
    Inner,
    /// A literal: `true`, `false`.
    Literal,
}

#[derive(Clone, Copy, Debug)]
pub struct Keyword {
    pub word: &'static str,
    pub place: Place,
    /// What it means, in a sentence (hover).
    pub meaning: &'static str,
    /// How it is written (completion's documentation).
    pub usage: &'static str,
}

const fn kw(
    word: &'static str,
    place: Place,
    meaning: &'static str,
    usage: &'static str,
) -> Keyword {
    Keyword {
        word,
        place,
        meaning,
        usage,
    }
}

pub const KEYWORDS: &[Keyword] = &[
    kw(
        "use",
        Place::Item,
        "Imports the `paper` prelude or a `.mio` file (its tasks and lets).",
        "import the `paper` prelude or a file: `use paper`, `use \"lib.mio\" as lib`",
    ),
    kw(
        "task",
        Place::Item,
        "Declares a task: a degradation with its parameter ranges.",
        "a degradation with its parameter ranges: `task heavy = noise(sigma = 50..70)`",
    ),
    kw(
        "let",
        Place::Item,
        "Names a value, expanded where it is used.",
        "a named value: `let order = [paper.sr, paper.noise]`",
    ),
    kw(
        "workflow",
        Place::Item,
        "An experiment: data, models, training, evaluation, sweeps, report.",
        "an experiment: data, models, training, evaluation",
    ),
    kw(
        "matrix",
        Place::Item,
        "Expands workflows over lists of values: every combination is a row.",
        "many workflows from one: `matrix table over base { path = [values] }`",
    ),
    kw(
        "data",
        Place::Statement,
        "Declares a data set: `images(...)` (clean images) or `pairs(...)`.",
        "`data NAME = images(\"folder\", patch = 128px, batch = 16)`",
    ),
    kw(
        "model",
        Place::Statement,
        "Declares a model: a backbone with its prompt strategy.",
        "`model NAME = srresnet(prompt = explicit)`",
    ),
    kw(
        "train",
        Place::Statement,
        "Trains a model on data: one node per stage in the plan.",
        "`train MODEL on DATA { strategy = ..., iters = ... }`",
    ),
    kw(
        "eval",
        Place::Statement,
        "Evaluates a trained model on a data set's degraded copies.",
        "`eval MODEL on DATA [as NAME] { tasks = ... }`",
    ),
    kw(
        "sweep",
        Place::Statement,
        "Blends two tasks' prompts and restores the same images at each step.",
        "`sweep MODEL on DATA_OR_IMAGE [as NAME] { from = ..., to = ... }`",
    ),
    kw(
        "report",
        Place::Statement,
        "The run's report: tables, curves, image grids.",
        "`report { title = ..., baseline = ... }`",
    ),
    kw(
        "extends",
        Place::Inner,
        "Starts from another workflow: statements replace, blocks merge setting by setting.",
        "`workflow NAME extends BASE { ... }`",
    ),
    kw(
        "over",
        Place::Inner,
        "The base workflow(s) of a matrix.",
        "`matrix NAME over BASE { path = [values] }`",
    ),
    kw(
        "on",
        Place::Inner,
        "The data a model is trained, evaluated or swept on.",
        "`train MODEL on DATA { ... }`",
    ),
    kw(
        "then",
        Place::Inner,
        "Chains degradations into one composite task, applied in order (an \"unknown\" degradation).",
        "`task mild = blur(sigma = 1.0..2.0) then sr(scale = 4) then noise(sigma = 5..10)`",
    ),
    kw(
        "as",
        Place::Inner,
        "A name: of an import, an evaluation or a sweep.",
        "`use \"lib.mio\" as lib`, `eval MODEL on DATA as NAME { ... }`",
    ),
    kw("true", Place::Literal, "The boolean true.", "`true`"),
    kw("false", Place::Literal, "The boolean false.", "`false`"),
];

/// The keywords of one place, in table order.
pub fn at(place: Place) -> impl Iterator<Item = &'static Keyword> {
    KEYWORDS.iter().filter(move |k| k.place == place)
}

/// The keyword `word`, if it is one.
pub fn lookup(word: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.word == word)
}

/// Whether `word` is a keyword of `place`.
pub fn is(word: &str, place: Place) -> bool {
    lookup(word).is_some_and(|k| k.place == place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_grammars_keywords() {
        let pest = include_str!("mio.pest");
        let mut in_grammar: Vec<&str> = pest
            .lines()
            .filter(|l| l.starts_with("kw_"))
            .map(|l| l.split('"').nth(1).expect("a quoted keyword"))
            .collect();
        let mut in_table: Vec<&str> = KEYWORDS.iter().map(|k| k.word).collect();
        in_grammar.sort();
        in_table.sort();
        assert_eq!(in_table, in_grammar);
        for k in KEYWORDS {
            assert!(k.meaning.len() > 5 && k.usage.len() > 3, "{}", k.word);
        }
    }
}
