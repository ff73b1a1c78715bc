//! The formula language: R's `y ~ a * factor(b) + c:d - 1` for the fixed part and lme4's `(1 + x | g)`,
//! `(x || g)`, `(1 | a/b)`, `(1 | a:b)` for random terms.
//!
//! Parsing follows R's operator semantics (`terms.formula`): `+` adds terms, `-` removes them (`- 1` drops the
//! intercept, as does `0 +`), `a * b` is `a + b + a:b`, `a / b` is `a + a:b`, `:` forms interactions,
//! duplicate terms are removed and terms are ordered by degree (main effects first) keeping the written order
//! within a degree. `factor(x)` marks a variable as categorical whatever its column type.

use std::fmt;

use thiserror::Error;

/// A formula could not be parsed; `position` is the 0-based character offset of the problem.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum FormulaError {
    /// The formula has no `~`.
    #[error("formula `{formula}` has no `~` separating the response from the predictors")]
    MissingTilde {
        /// The formula as given.
        formula: String,
    },
    /// A token that does not belong at that place.
    #[error("formula `{formula}`: unexpected {found} at character {position}; {expected}")]
    Unexpected {
        /// The formula as given.
        formula: String,
        /// What was found.
        found: String,
        /// 0-based character offset.
        position: usize,
        /// What would have been valid there.
        expected: String,
    },
    /// A function other than `factor()` (and `cbind()` on the left).
    #[error(
        "formula `{formula}`: function `{name}()` is not supported (only factor(x) on the right and cbind(successes, failures) on the left); compute the column beforehand"
    )]
    UnsupportedFunction {
        /// The formula as given.
        formula: String,
        /// The function's name.
        name: String,
    },
    /// A random-effects term `( … | g)` inside another expression.
    #[error("formula `{formula}`: random-effects term `{term}` must be added at the top level of the formula")]
    NestedRandomTerm {
        /// The formula as given.
        formula: String,
        /// The offending term.
        term: String,
    },
    /// Random-effects terms where the model does not allow them (e.g. a propensity model).
    #[error("formula `{formula}`: random-effects terms are not allowed here")]
    RandomNotAllowed {
        /// The formula as given.
        formula: String,
    },
    /// The formula is beyond what any model here can use: nested too deeply, too long, or expanding to too
    /// many terms (`a * b * … * z` has 2^26 terms).
    #[error("formula `{formula}`: {reason}")]
    TooComplex {
        /// The formula as given (shortened when very long).
        formula: String,
        /// What limit it exceeds.
        reason: String,
    },
    /// The response appears among the predictors.
    #[error("formula `{formula}`: the response `{name}` also appears on the right-hand side")]
    ResponseAsPredictor {
        /// The formula as given.
        formula: String,
        /// The variable.
        name: String,
    },
}

/// A variable as used in a formula.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var {
    /// Column name.
    pub name: String,
    /// Wrapped in `factor()`: categorical whatever the column type.
    pub factor: bool,
}

impl Var {
    /// The label R prints: `factor(x)` or `x`.
    pub fn label(&self) -> String {
        if self.factor { format!("factor({})", self.name) } else { self.name.clone() }
    }
}

/// One model term: a single variable or an interaction of several (`a:b`), in written order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The variables of the interaction, in the order written.
    pub vars: Vec<Var>,
}

impl Term {
    /// R's term label: `a`, `factor(b)`, `a:factor(b)`.
    pub fn label(&self) -> String {
        self.vars.iter().map(Var::label).collect::<Vec<_>>().join(":")
    }

    fn same_set(&self, other: &Term) -> bool {
        self.vars.len() == other.vars.len() && self.vars.iter().all(|v| other.vars.contains(v))
    }

    fn product(&self, other: &Term) -> Term {
        let mut vars = self.vars.clone();
        for v in &other.vars {
            if !vars.contains(v) {
                vars.push(v.clone());
            }
        }
        Term { vars }
    }
}

/// A set of terms with or without an intercept: the fixed part of a formula or the left side of a random term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermList {
    /// Whether the model has an intercept.
    pub intercept: bool,
    /// Terms, ordered by degree, each once.
    pub terms: Vec<Term>,
}

impl TermList {
    /// Every variable used, each once, in order of first appearance.
    pub fn variables(&self) -> Vec<Var> {
        let mut out: Vec<Var> = Vec::new();
        for t in &self.terms {
            for v in &t.vars {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        }
        out
    }
}

/// A random-effects term `(lhs | g)` after expansion of `||` and `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSpec {
    /// The term's model (intercept and slopes).
    pub lhs: TermList,
    /// The grouping factor: one name, or several for an interaction `a:b`.
    pub group: Vec<String>,
}

impl RandomSpec {
    /// The grouping factor's label, `g` or `a:b`.
    pub fn group_label(&self) -> String {
        self.group.join(":")
    }
}

/// The left-hand side of a formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A single numeric column.
    Column(String),
    /// `cbind(successes, failures)` for binomial counts.
    Cbind(String, String),
}

impl Response {
    /// The response as written.
    pub fn label(&self) -> String {
        match self {
            Response::Column(c) => c.clone(),
            Response::Cbind(a, b) => format!("cbind({a}, {b})"),
        }
    }

    /// The columns it uses.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Response::Column(c) => vec![c.as_str()],
            Response::Cbind(a, b) => vec![a.as_str(), b.as_str()],
        }
    }
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    /// The formula text as given.
    pub text: String,
    /// Left-hand side.
    pub response: Response,
    /// Fixed-effects terms.
    pub fixed: TermList,
    /// Random-effects terms, in written order.
    pub random: Vec<RandomSpec>,
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Formula {
    /// Every column the formula reads, each once: response, fixed, random slopes and grouping factors.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: &str| {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        };
        for c in self.response.columns() {
            add(c);
        }
        for v in self.fixed.variables() {
            add(&v.name);
        }
        for r in &self.random {
            for v in r.lhs.variables() {
                add(&v.name);
            }
            for g in &r.group {
                add(g);
            }
        }
        out
    }

    /// Fails when the formula has random-effects terms (for fixed-effects-only models such as propensity scores).
    pub fn require_fixed_only(&self) -> Result<(), FormulaError> {
        if self.random.is_empty() { Ok(()) } else { Err(FormulaError::RandomNotAllowed { formula: self.text.clone() }) }
    }
}

/// Parses an R/lme4 formula such as `maths ~ factor(year) * lead + fsm + (1 | school_id)`.
pub fn parse_formula(text: &str) -> Result<Formula, FormulaError> {
    if text.chars().count() > MAX_FORMULA_CHARS {
        return Err(too_complex(text, format!("it has more than {MAX_FORMULA_CHARS} characters")));
    }
    let tokens = tokenize(text)?;
    let mut depth = 0usize;
    for t in &tokens {
        match t.kind {
            Tok::LParen => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(too_complex(
                        text,
                        format!("parentheses are nested more than {MAX_NESTING} deep (at character {})", t.pos),
                    ));
                }
            }
            Tok::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut p = Parser { text, tokens, pos: 0 };
    let tilde = p.tokens.iter().position(|t| t.kind == Tok::Tilde);
    let Some(tilde) = tilde else {
        return Err(FormulaError::MissingTilde { formula: text.to_string() });
    };
    let response = p.response(tilde)?;
    p.pos = tilde + 1;
    let expr = p.expr(true)?;
    if p.pos < p.tokens.len() {
        return Err(p.unexpected("an operator (+, -, *, /, :) or the end of the formula"));
    }
    let mut intercept = true;
    if let Some(i) = expr.intercept {
        intercept = i;
    }
    let mut terms = dedup(expr.terms);
    terms.sort_by_key(|t| t.vars.len());
    let resp_cols = response.columns();
    for t in &terms {
        for v in &t.vars {
            if resp_cols.contains(&v.name.as_str()) {
                return Err(FormulaError::ResponseAsPredictor { formula: text.to_string(), name: v.name.clone() });
            }
        }
    }
    Ok(Formula { text: text.trim().to_string(), response, fixed: TermList { intercept, terms }, random: expr.random })
}

/// The longest formula accepted, in characters.
pub const MAX_FORMULA_CHARS: usize = 10_000;
/// The deepest nesting of parentheses accepted (the parser is recursive).
pub const MAX_NESTING: usize = 64;
/// The most fixed-effect terms a formula may expand to (each term is at least one column of X).
pub const MAX_TERMS: usize = 10_000;

fn too_complex(text: &str, reason: String) -> FormulaError {
    let formula = if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text.to_string()
    };
    FormulaError::TooComplex { formula, reason }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Name,
    Number,
    Tilde,
    Plus,
    Minus,
    Star,
    Slash,
    Colon,
    Bar,
    DoubleBar,
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    text: String,
    pos: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, FormulaError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = |k: Tok| Token { kind: k, text: c.to_string(), pos: start };
        match c {
            c if c.is_whitespace() => i += 1,
            '~' => {
                out.push(simple(Tok::Tilde));
                i += 1
            }
            '+' => {
                out.push(simple(Tok::Plus));
                i += 1
            }
            '-' => {
                out.push(simple(Tok::Minus));
                i += 1
            }
            '*' => {
                out.push(simple(Tok::Star));
                i += 1
            }
            '/' => {
                out.push(simple(Tok::Slash));
                i += 1
            }
            ':' => {
                out.push(simple(Tok::Colon));
                i += 1
            }
            '(' => {
                out.push(simple(Tok::LParen));
                i += 1
            }
            ')' => {
                out.push(simple(Tok::RParen));
                i += 1
            }
            ',' => {
                out.push(simple(Tok::Comma));
                i += 1
            }
            '|' => {
                if chars.get(i + 1) == Some(&'|') {
                    out.push(Token { kind: Tok::DoubleBar, text: "||".into(), pos: start });
                    i += 2;
                } else {
                    out.push(simple(Tok::Bar));
                    i += 1;
                }
            }
            '`' => {
                let end = chars[i + 1..].iter().position(|&c| c == '`').map(|e| e + i + 1);
                let Some(end) = end else {
                    return Err(FormulaError::Unexpected {
                        formula: text.to_string(),
                        found: "an unclosed backtick".into(),
                        position: start,
                        expected: "a closing ` after the quoted name".into(),
                    });
                };
                out.push(Token { kind: Tok::Name, text: chars[i + 1..end].iter().collect(), pos: start });
                i = end + 1;
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Token { kind: Tok::Number, text: chars[start..i].iter().collect(), pos: start });
            }
            c if c.is_alphabetic() || c == '.' || c == '_' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token { kind: Tok::Name, text: chars[start..i].iter().collect(), pos: start });
            }
            other => {
                return Err(FormulaError::Unexpected {
                    formula: text.to_string(),
                    found: format!("character `{other}`"),
                    position: start,
                    expected: "names, numbers 0/1 and the operators ~ + - * / : | ( )".into(),
                });
            }
        }
    }
    Ok(out)
}

/// The value of a sub-expression: terms, an explicit intercept setting, random terms.
#[derive(Debug, Default)]
struct Expr {
    terms: Vec<Term>,
    intercept: Option<bool>,
    random: Vec<RandomSpec>,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

fn dedup(terms: Vec<Term>) -> Vec<Term> {
    let mut out: Vec<Term> = Vec::new();
    for t in terms {
        if !out.iter().any(|o| o.same_set(&t)) {
            out.push(t);
        }
    }
    out
}

impl Parser<'_> {
    fn peek(&self) -> Option<Tok> {
        self.tokens.get(self.pos).map(|t| t.kind)
    }

    fn unexpected(&self, expected: &str) -> FormulaError {
        let (found, position) = match self.tokens.get(self.pos) {
            Some(t) => (format!("`{}`", t.text), t.pos),
            None => ("end of formula".to_string(), self.text.chars().count()),
        };
        FormulaError::Unexpected { formula: self.text.to_string(), found, position, expected: expected.to_string() }
    }

    fn expect(&mut self, kind: Tok, expected: &str) -> Result<Token, FormulaError> {
        if self.peek() == Some(kind) {
            self.pos += 1;
            Ok(self.tokens[self.pos - 1].clone())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn response(&mut self, tilde: usize) -> Result<Response, FormulaError> {
        let toks = &self.tokens[..tilde];
        match toks {
            [t] if t.kind == Tok::Name => Ok(Response::Column(t.text.clone())),
            [f, l, a, c, b, r]
                if f.kind == Tok::Name
                    && f.text == "cbind"
                    && l.kind == Tok::LParen
                    && a.kind == Tok::Name
                    && c.kind == Tok::Comma
                    && b.kind == Tok::Name
                    && r.kind == Tok::RParen =>
            {
                Ok(Response::Cbind(a.text.clone(), b.text.clone()))
            }
            [f, l, ..] if f.kind == Tok::Name && l.kind == Tok::LParen && f.text != "cbind" => {
                Err(FormulaError::UnsupportedFunction { formula: self.text.to_string(), name: f.text.clone() })
            }
            _ => {
                // Point at the first token that does not fit a single response column.
                self.pos = if toks.len() > 1 { 1 } else { tilde };
                Err(self.unexpected("a single response column (or cbind(successes, failures)) before `~`"))
            }
        }
    }

    /// expr := prod (('+' | '-') prod)*
    fn expr(&mut self, top: bool) -> Result<Expr, FormulaError> {
        let mut acc = if self.peek() == Some(Tok::Minus) { Expr::default() } else { self.prod(top)? };
        loop {
            match self.peek() {
                Some(Tok::Plus) => {
                    self.pos += 1;
                    let rhs = self.prod(top)?;
                    if acc.terms.len() + rhs.terms.len() > MAX_TERMS {
                        return Err(too_complex(self.text, format!("it expands to more than {MAX_TERMS} terms")));
                    }
                    if rhs.intercept.is_some() {
                        acc.intercept = rhs.intercept;
                    }
                    acc.terms.extend(rhs.terms);
                    acc.random.extend(rhs.random);
                }
                Some(Tok::Minus) => {
                    self.pos += 1;
                    let rhs = self.prod(false)?;
                    if let Some(i) = rhs.intercept {
                        acc.intercept = Some(!i);
                    }
                    acc.terms.retain(|t| !rhs.terms.iter().any(|r| r.same_set(t)));
                }
                _ => return Ok(acc),
            }
        }
    }

    /// prod := inter (('*' | '/') inter)*
    fn prod(&mut self, top: bool) -> Result<Expr, FormulaError> {
        let mut acc = self.inter(top)?;
        loop {
            let op = self.peek();
            if op != Some(Tok::Star) && op != Some(Tok::Slash) {
                return Ok(acc);
            }
            self.pos += 1;
            let rhs = self.inter(false)?;
            if !acc.random.is_empty() || !rhs.random.is_empty() {
                return Err(self.nested_random());
            }
            // a * b has |a| + |b| + |a||b| = (|a| + 1)(|b| + 1) - 1 terms.
            if op == Some(Tok::Star) && (acc.terms.len() + 1).saturating_mul(rhs.terms.len() + 1) > MAX_TERMS + 1 {
                return Err(too_complex(self.text, format!("it expands to more than {MAX_TERMS} terms")));
            }
            let mut terms = acc.terms.clone();
            if op == Some(Tok::Star) {
                terms.extend(rhs.terms.iter().cloned());
                for a in &acc.terms {
                    for b in &rhs.terms {
                        terms.push(a.product(b));
                    }
                }
            } else {
                // a / b = a + (all variables of a):b
                let all_a = acc.terms.iter().fold(Term { vars: vec![] }, |x, t| x.product(t));
                for b in &rhs.terms {
                    terms.push(all_a.product(b));
                }
            }
            acc = Expr { terms: dedup(terms), intercept: acc.intercept, random: vec![] };
        }
    }

    fn nested_random(&self) -> FormulaError {
        FormulaError::NestedRandomTerm { formula: self.text.to_string(), term: "( … | … )".into() }
    }

    /// inter := atom (':' atom)*
    fn inter(&mut self, top: bool) -> Result<Expr, FormulaError> {
        let mut acc = self.atom(top)?;
        while self.peek() == Some(Tok::Colon) {
            self.pos += 1;
            let rhs = self.atom(false)?;
            if !acc.random.is_empty() || !rhs.random.is_empty() {
                return Err(self.nested_random());
            }
            if acc.intercept.is_some() || rhs.intercept.is_some() {
                return Err(FormulaError::Unexpected {
                    formula: self.text.to_string(),
                    found: "a number in an interaction".into(),
                    position: self.tokens[self.pos - 1].pos,
                    expected: "variables on both sides of `:`".into(),
                });
            }
            if acc.terms.len().saturating_mul(rhs.terms.len()) > MAX_TERMS {
                return Err(too_complex(self.text, format!("it expands to more than {MAX_TERMS} terms")));
            }
            let mut terms = Vec::new();
            for a in &acc.terms {
                for b in &rhs.terms {
                    terms.push(a.product(b));
                }
            }
            acc = Expr { terms: dedup(terms), intercept: None, random: vec![] };
        }
        Ok(acc)
    }

    fn atom(&mut self, top: bool) -> Result<Expr, FormulaError> {
        let Some(tok) = self.tokens.get(self.pos).cloned() else {
            return Err(self.unexpected("a variable, a number or `(`"));
        };
        match tok.kind {
            Tok::Number => {
                self.pos += 1;
                match tok.text.as_str() {
                    "0" => Ok(Expr { intercept: Some(false), ..Default::default() }),
                    "1" => Ok(Expr { intercept: Some(true), ..Default::default() }),
                    _ => {
                        self.pos -= 1;
                        Err(self.unexpected("0 or 1 (the only numbers a formula may contain)"))
                    }
                }
            }
            Tok::Name => {
                self.pos += 1;
                if self.peek() == Some(Tok::LParen) {
                    if tok.text != "factor" {
                        return Err(FormulaError::UnsupportedFunction {
                            formula: self.text.to_string(),
                            name: tok.text.clone(),
                        });
                    }
                    self.pos += 1;
                    let name = self.expect(Tok::Name, "a column name inside factor()")?;
                    self.expect(Tok::RParen, "`)` closing factor(")?;
                    return Ok(Expr {
                        terms: vec![Term { vars: vec![Var { name: name.text, factor: true }] }],
                        ..Default::default()
                    });
                }
                Ok(Expr {
                    terms: vec![Term { vars: vec![Var { name: tok.text, factor: false }] }],
                    ..Default::default()
                })
            }
            Tok::LParen => {
                self.pos += 1;
                let start = self.pos;
                let inner = self.expr(false)?;
                match self.peek() {
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    Some(bar @ (Tok::Bar | Tok::DoubleBar)) => {
                        let term_text = self.span_text(start - 1);
                        if !top {
                            return Err(FormulaError::NestedRandomTerm {
                                formula: self.text.to_string(),
                                term: term_text,
                            });
                        }
                        if !inner.random.is_empty() {
                            return Err(self.nested_random());
                        }
                        self.pos += 1;
                        let groups = self.group_expr()?;
                        self.expect(Tok::RParen, "`)` closing the random-effects term")?;
                        let mut lhs_terms = dedup(inner.terms);
                        lhs_terms.sort_by_key(|t| t.vars.len());
                        let lhs = TermList { intercept: inner.intercept.unwrap_or(true), terms: lhs_terms };
                        let mut random = Vec::new();
                        for group in groups {
                            if bar == Tok::DoubleBar {
                                // lme4's expansion: (1 + x || g) = (1 | g) + (0 + x | g)
                                if lhs.intercept {
                                    random.push(RandomSpec {
                                        lhs: TermList { intercept: true, terms: vec![] },
                                        group: group.clone(),
                                    });
                                }
                                for t in &lhs.terms {
                                    random.push(RandomSpec {
                                        lhs: TermList { intercept: false, terms: vec![t.clone()] },
                                        group: group.clone(),
                                    });
                                }
                            } else {
                                random.push(RandomSpec { lhs: lhs.clone(), group });
                            }
                        }
                        Ok(Expr { random, ..Default::default() })
                    }
                    _ => Err(self.unexpected("`)`, or `|` in a random-effects term")),
                }
            }
            _ => Err(self.unexpected("a variable, a number or `(`")),
        }
    }

    fn span_text(&self, from: usize) -> String {
        let start = self.tokens[from].pos;
        let end = self.tokens.iter().skip(from).find(|t| t.kind == Tok::RParen).map_or(self.text.len(), |t| t.pos + 1);
        self.text.chars().skip(start).take(end - start).collect()
    }

    /// The grouping side of `( … | g)`: `g`, `a:b` or `a/b` (nesting: `a` and `a:b`).
    fn group_expr(&mut self) -> Result<Vec<Vec<String>>, FormulaError> {
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        loop {
            let name = self.expect(Tok::Name, "a grouping factor's column name")?;
            current.push(name.text);
            match self.peek() {
                Some(Tok::Colon) => self.pos += 1,
                Some(Tok::Slash) => {
                    self.pos += 1;
                    groups.push(current.clone());
                }
                _ => break,
            }
        }
        groups.push(current);
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(f: &Formula) -> Vec<String> {
        f.fixed.terms.iter().map(Term::label).collect()
    }

    #[test]
    fn expands_products_and_orders_by_degree() {
        let f = parse_formula("y ~ factor(year) * lead + fsm").unwrap();
        assert_eq!(labels(&f), ["factor(year)", "lead", "fsm", "factor(year):lead"]);
        assert!(f.fixed.intercept);
    }

    #[test]
    fn removes_intercept_and_terms() {
        let f = parse_formula("y ~ a*b - a:b - 1").unwrap();
        assert_eq!(labels(&f), ["a", "b"]);
        assert!(!f.fixed.intercept);
        let g = parse_formula("y ~ 0 + a").unwrap();
        assert!(!g.fixed.intercept);
    }

    #[test]
    fn nesting_slash_in_fixed_part() {
        let f = parse_formula("y ~ a/b").unwrap();
        assert_eq!(labels(&f), ["a", "a:b"]);
    }

    #[test]
    fn random_terms_expand_like_lme4() {
        let f = parse_formula("y ~ x + (x || g) + (1 | a/b) + (1 + x | c:d)").unwrap();
        let r: Vec<(bool, Vec<String>, String)> = f
            .random
            .iter()
            .map(|r| (r.lhs.intercept, r.lhs.terms.iter().map(Term::label).collect(), r.group_label()))
            .collect();
        assert_eq!(
            r,
            vec![
                (true, vec![], "g".to_string()),
                (false, vec!["x".to_string()], "g".to_string()),
                (true, vec![], "a".to_string()),
                (true, vec![], "a:b".to_string()),
                (true, vec!["x".to_string()], "c:d".to_string()),
            ]
        );
        assert_eq!(f.columns(), ["y", "x", "g", "a", "b", "c", "d"]);
    }

    #[test]
    fn cbind_response() {
        let f = parse_formula("cbind(incidence, size_minus) ~ period + (1 | herd)").unwrap();
        assert_eq!(f.response, Response::Cbind("incidence".into(), "size_minus".into()));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(parse_formula("y + x"), Err(FormulaError::MissingTilde { .. })));
        assert!(
            matches!(parse_formula("y ~ log(x)"), Err(FormulaError::UnsupportedFunction { name, .. }) if name == "log")
        );
        assert!(matches!(parse_formula("y ~ x +"), Err(FormulaError::Unexpected { .. })));
        assert!(matches!(parse_formula("y ~ x:(1|g)"), Err(FormulaError::NestedRandomTerm { .. })));
        assert!(matches!(parse_formula("y ~ y + x"), Err(FormulaError::ResponseAsPredictor { .. })));
        assert!(matches!(parse_formula("y ~ x ? z"), Err(FormulaError::Unexpected { position: 6, .. })));
        assert!(matches!(parse_formula("y ~ 2 + x"), Err(FormulaError::Unexpected { .. })));
        let msg = parse_formula("y ~ x + ").unwrap_err().to_string();
        assert!(msg.contains("end of formula"), "{msg}");
    }

    #[test]
    fn limits_refuse_formulas_that_would_overflow_or_explode() {
        let deep = format!("y ~ {}x{}", "(".repeat(10_000), ")".repeat(10_000));
        let msg = parse_formula(&deep).unwrap_err().to_string();
        assert!(msg.contains("characters"), "{msg}");
        let deep = format!("y ~ {}x{}", "(".repeat(2_000), ")".repeat(2_000));
        let msg = parse_formula(&deep).unwrap_err().to_string();
        assert!(msg.contains("nested more than 64 deep"), "{msg}");
        let ok = format!("y ~ {}x{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(labels(&parse_formula(&ok).unwrap()), ["x"]);
        let vars: Vec<String> = (0..26).map(|i| format!("x{i}")).collect();
        let msg = parse_formula(&format!("y ~ {}", vars.join(" * "))).unwrap_err().to_string();
        assert!(msg.contains("more than 10000 terms"), "{msg}");
        let msg = parse_formula(&format!("y ~ ({}):({})", vars.join(" + "), vars.join(" + ")));
        assert!(msg.is_ok(), "26 x 26 interactions are within the limit");
        let a: Vec<String> = (0..72).map(|i| format!("a{i}")).collect();
        let b: Vec<String> = (0..136).map(|i| format!("b{i}")).collect();
        let exact = parse_formula(&format!("y ~ ({}) * ({})", a.join(" + "), b.join(" + "))).unwrap();
        assert_eq!(exact.fixed.terms.len(), 10_000, "exactly the limit is allowed");
        let sum: Vec<String> =
            (0..12).map(|k| format!("({}):({})", a[..60].join("+"), b[..15].join("+") + &format!("+c{k}"))).collect();
        let msg = parse_formula(&format!("y ~ {}", sum.join(" + "))).unwrap_err().to_string();
        assert!(msg.contains("more than 10000 terms"), "a sum of products is counted: {msg}");
        let wide: Vec<String> = (0..200).map(|i| format!("z{i}")).collect();
        let msg = parse_formula(&format!("y ~ ({}):({})", wide.join(" + "), wide.join(" + "))).unwrap_err();
        assert!(msg.to_string().contains("more than 10000 terms"), "{msg}");
    }
}
