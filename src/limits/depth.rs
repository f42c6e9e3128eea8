//! How deeply a statement's expressions may nest.
//!
//! The parser turns `a OR b OR c ...` and `1 + 1 + ...` into trees as deep as they are long,
//! and everything after it (datafusion-pg-catalog's rewrites, DataFusion's planner and
//! optimizer, delta-rs's predicate conversion) walks them recursively. Two checks keep that
//! recursion within the stack (`super::THREAD_STACK_BYTES`):
//! - before parsing, [`check_tokens`] bounds the longest run of operators, which bounds how deep
//!   the parser's tree can be;
//! - after parsing, [`balance_and_check`] rebuilds long AND/OR chains as balanced trees (they
//!   are associative, so the answer is the same and the depth is logarithmic: BI tools and ORMs
//!   send thousands of `OR id = ...` terms) and refuses anything still nested deeper than
//!   [`MAX_EXPRESSION_DEPTH`].
//!
//! Both refuse with 54001, as PostgreSQL refuses `1 + 1 + ...` past about 4,000 terms.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Statement, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// Deepest expression a statement may hold once AND/OR chains are balanced. PostgreSQL's
/// default `max_stack_depth` stops `1 + 1 + ...` at about 4,000 terms. The stack given to each
/// thread holds that many levels, but DataFusion derives the type of every level from those
/// below it, again in each optimizer pass, so planning time grows with the square of the depth;
/// the limit keeps the worst statement to about a second of planning.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Longest run of operators (between commas, parentheses and clause keywords) a query may hold
/// before it is parsed. Runs of AND and OR up to this length are balanced after parsing; the
/// parser's own tree for such a run is this deep, and must fit the stack until then.
pub const MAX_OPERATOR_RUN: usize = 50_000;

/// Bounds the depth of the tree the parser will build for `sql`, without parsing it.
pub fn check_tokens(sql: &str) -> Result<()> {
    // Only a long text can hold a long run; most statements skip the tokenizer here.
    if sql.len() < MAX_OPERATOR_RUN {
        return Ok(());
    }
    let dialect = PostgreSqlDialect {};
    // A text that does not tokenize fails in the parser, with a better message.
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else { return Ok(()) };
    let mut run = 0usize;
    for token in &tokens {
        match token {
            Token::Comma | Token::LParen | Token::RParen | Token::SemiColon => run = 0,
            Token::Word(w) if matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT) => run += 1,
            Token::Word(w) if w.keyword != Keyword::NoKeyword && w.quote_style.is_none() => {
                if resets_run(w.keyword) {
                    run = 0;
                }
            }
            Token::Word(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::Whitespace(_)
            | Token::Placeholder(_)
            | Token::Period
            | Token::DoubleColon
            | Token::EOF => {}
            _ => run += 1,
        }
        if run > MAX_OPERATOR_RUN {
            return Err(too_complex(format!("a run of more than {MAX_OPERATOR_RUN} operators")));
        }
    }
    Ok(())
}

/// Clause keywords end an operator run: `CASE WHEN a = 1 THEN ... WHEN a = 2 ...` is flat.
fn resets_run(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::CASE
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::END
            | Keyword::VALUES
            | Keyword::SET
            | Keyword::ON
            | Keyword::JOIN
            | Keyword::UNION
            | Keyword::AS
    )
}

/// Balances long AND/OR chains in place, then refuses a statement nested deeper than
/// [`MAX_EXPRESSION_DEPTH`].
pub fn balance_and_check(stmt: &mut Statement) -> Result<()> {
    let mut visitor = Depth { depth: 0 };
    match stmt.visit(&mut visitor) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// Tracks the nesting of the expression being visited. It stops at the first level past the
/// limit, so its own recursion is bounded too.
struct Depth {
    depth: usize,
}

impl VisitorMut for Depth {
    type Break = Error;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        if let Err(e) = balance(expr) {
            return ControlFlow::Break(e);
        }
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(too_complex(format!("an expression nested more than {MAX_EXPRESSION_DEPTH} levels deep")));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<Error> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Chains shorter than this keep the shape they were written in (and their EXPLAIN output).
const BALANCE_FROM: usize = 16;

/// Rewrites `a OR b OR c ...` (any grouping of one operator, AND or OR) as a balanced tree of
/// the same operands in the same order. Nothing else is associative in SQL's three-valued logic
/// and its numeric types alike: `+` over floats or with overflow is not.
///
/// Comparisons of one expression with constants are gathered first, as PostgreSQL's planner
/// does with `= ANY`: `x = 1 OR x = 2 ...` becomes `x IN (1, 2, ...)` and `x <> 1 AND x <> 2
/// ...` becomes `x NOT IN (1, 2, ...)`, which mean the same for every `x` and every constant,
/// NULL included. What is left may have at most [`MAX_CHAIN_TERMS`] operands: DataFusion's
/// optimizer rebuilds conjunctions as chains and re-derives their types at every level, so its
/// planning time grows with the square of a chain's length (5,000 `x <> c` terms planned for
/// ten minutes).
fn balance(expr: &mut Expr) -> Result<()> {
    let op = match expr {
        Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } => op.clone(),
        _ => return Ok(()),
    };
    let mut operands = Vec::new();
    // Flattened with an explicit stack: the chain may be far deeper than the thread's stack.
    let mut pending = vec![std::mem::replace(expr, Expr::value(Value::Null))];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                pending.push(*right);
                pending.push(*left);
            }
            other => operands.push(other),
        }
    }
    if operands.len() >= BALANCE_FROM {
        operands = gather_lists(operands, op == BinaryOperator::Or);
    }
    if operands.len() > MAX_CHAIN_TERMS {
        let what = if op == BinaryOperator::Or { "OR" } else { "AND" };
        return Err(too_complex(format!("{} conditions joined by {what}, over the limit of {MAX_CHAIN_TERMS}", operands.len())));
    }
    *expr = if operands.len() < BALANCE_FROM { chain(operands, &op) } else { balanced(operands, &op) };
    Ok(())
}

/// Most operands one AND or OR may join, once comparisons with constants are gathered into
/// lists (which may be as long as they like).
pub const MAX_CHAIN_TERMS: usize = 1_000;

/// Gathers `x = c` (for OR; `x <> c` for AND) and `x [NOT] IN (c, ...)` over the same `x` into
/// one list per `x`, placed where its first comparison was; everything else keeps its place.
fn gather_lists(operands: Vec<Expr>, or: bool) -> Vec<Expr> {
    let mut out: Vec<Expr> = Vec::with_capacity(operands.len());
    // Per gathered expression: where its list is in `out`.
    let mut lists: Vec<(Expr, usize)> = Vec::new();
    for operand in operands {
        let Some((subject, constants)) = comparison_with_constants(operand.clone(), or) else {
            out.push(operand);
            continue;
        };
        match lists.iter().find(|(s, _)| *s == subject) {
            Some((_, at)) => {
                if let Expr::InList { list, .. } = &mut out[*at] {
                    list.extend(constants);
                }
            }
            None => {
                lists.push((subject.clone(), out.len()));
                out.push(Expr::InList { expr: Box::new(subject), list: constants, negated: !or });
            }
        }
    }
    // A "list" of one is the comparison it came from, as written.
    out.into_iter()
        .map(|e| match e {
            Expr::InList { expr, mut list, negated } if list.len() == 1 => Expr::BinaryOp {
                left: expr,
                op: if negated { BinaryOperator::NotEq } else { BinaryOperator::Eq },
                right: Box::new(list.remove(0)),
            },
            other => other,
        })
        .collect()
}

/// `x = c` / `c = x` / `x IN (c, ...)` (or, for AND, `<>` and `NOT IN`) as `x` and its constants.
fn comparison_with_constants(e: Expr, or: bool) -> Option<(Expr, Vec<Expr>)> {
    let wanted = if or { BinaryOperator::Eq } else { BinaryOperator::NotEq };
    match e {
        Expr::BinaryOp { left, op, right } if op == wanted => match (is_constant(&left), is_constant(&right)) {
            (false, true) => Some((*left, vec![*right])),
            (true, false) => Some((*right, vec![*left])),
            _ => None,
        },
        Expr::InList { expr, list, negated } if negated != or && list.iter().all(is_constant) => Some((*expr, list)),
        Expr::Nested(inner) => comparison_with_constants(*inner, or),
        _ => None,
    }
}

/// A literal, possibly signed or cast (`-1`, `'2025-01-01'::date`, `DATE '2025-01-01'`).
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::UnaryOp { expr, .. } | Expr::Cast { expr, .. } | Expr::Nested(expr) => is_constant(expr),
        _ => false,
    }
}

/// A left-deep chain, as the parser builds it.
fn chain(operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    let mut it = operands.into_iter();
    let first = it.next().unwrap_or(Expr::value(Value::Null));
    it.fold(first, |left, right| Expr::BinaryOp { left: Box::new(left), op: op.clone(), right: Box::new(right) })
}

/// A tree of depth log2(n); the recursion here is that deep too.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() <= 2 {
        return chain(operands, op);
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp { left: Box::new(balanced(operands, op)), op: op.clone(), right: Box::new(balanced(right, op)) }
}

fn too_complex(what: String) -> Error {
    Error::TooComplex(format!(
        "statement too complex: it holds {what}; write long lists as IN (...) or join a table of the values"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn long_or_chains_become_shallow_and_keep_their_operands_in_order() {
        let terms: Vec<String> = (0..900).map(|i| format!("c{i} = {i}")).collect();
        let mut stmt = parse(&format!("SELECT * FROM t WHERE {}", terms.join(" OR ")));
        balance_and_check(&mut stmt).unwrap();
        let text = stmt.to_string();
        let order: Vec<u32> = text
            .split(" c")
            .skip(1)
            .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap())
            .collect();
        assert_eq!(order, (0..900).collect::<Vec<u32>>(), "operands lost or reordered");
        let mut depth = 0usize;
        let mut max = 0usize;
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        assert!(max < 20, "still {max} deep");
    }

    #[test]
    fn comparisons_with_constants_become_lists_and_other_long_chains_are_refused() {
        let ands = (0..5000).map(|i| format!("id <> {i}")).collect::<Vec<_>>().join(" AND ");
        let mut stmt = parse(&format!("SELECT * FROM t WHERE x > 0 AND {ands} AND (id <> -7) AND y = 1"));
        balance_and_check(&mut stmt).unwrap();
        let text = stmt.to_string();
        assert!(text.contains("x > 0 AND id NOT IN (0, 1, 2,"), "{text}");
        assert!(text.ends_with("4999, -7) AND y = 1"), "{text}");
        let mixed = (0..MAX_CHAIN_TERMS + 1).map(|i| format!("c{i} = {i}")).collect::<Vec<_>>().join(" OR ");
        let err = balance_and_check(&mut parse(&format!("SELECT * FROM t WHERE {mixed}"))).unwrap_err();
        assert_eq!(err.sqlstate(), "54001");
        let short = "SELECT * FROM t WHERE a = 1 OR a = 2";
        let mut stmt = parse(short);
        balance_and_check(&mut stmt).unwrap();
        assert_eq!(stmt.to_string(), short, "short chains keep their shape");
    }

    #[test]
    fn deep_arithmetic_is_refused_past_the_limit() {
        let ok = format!("SELECT {}", vec!["1"; 900].join(" + "));
        balance_and_check(&mut parse(&ok)).unwrap();
        let too_deep = format!("SELECT {}", vec!["1"; MAX_EXPRESSION_DEPTH + 10].join(" + "));
        let err = balance_and_check(&mut parse(&too_deep)).unwrap_err();
        assert_eq!(err.sqlstate(), "54001");
    }

    #[test]
    fn token_runs_are_bounded_but_lists_and_case_are_not_runs() {
        let list = format!("SELECT * FROM t WHERE id IN ({})", (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        check_tokens(&list).unwrap();
        let case = format!("SELECT CASE {} END", (0..60_000).map(|i| format!("WHEN a = {i} THEN {i}")).collect::<Vec<_>>().join(" "));
        check_tokens(&case).unwrap();
        let run = format!("SELECT {}", vec!["1"; MAX_OPERATOR_RUN + 10].join("+"));
        assert_eq!(check_tokens(&run).unwrap_err().sqlstate(), "54001");
    }
}
