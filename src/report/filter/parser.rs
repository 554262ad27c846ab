//! Reading a `--where` predicate: a tokenizer and a recursive-descent
//! parser that resolves every column against the table (and adds it to
//! the projection) and types every literal by the column it meets.

use anyhow::{bail, Result};

use super::{CompareOp, Expr, Literal, Operand, MAX_DEPTH};
use crate::report::read::Projection;
use crate::store::schema::{ColumnType, Table};

/// Parse `text` as a predicate over table `T`, adding the columns it uses
/// to `projection`.
pub fn parse<T: Table>(text: &str, projection: &mut Projection) -> Result<Expr> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
        text,
        projection,
        table: std::marker::PhantomData::<T>,
    };
    let expr = parser.or()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        bail!(
            "--where: unexpected '{}' at character {} of '{text}'",
            token.text,
            token.offset + 1
        );
    }
    Ok(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word,
    Quoted,
    Number,
    Symbol,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    offset: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            // 'text' literal, or "identifier"; a doubled quote is a quote.
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => bail!(
                        "--where: unterminated {c} starting at character {} of '{text}'",
                        offset + 1
                    ),
                    Some(&(_, q)) if q == c => {
                        if chars.get(i + 1).is_some_and(|&(_, n)| n == c) {
                            value.push(c);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&(_, other)) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            let kind = if c == '\'' { Kind::Quoted } else { Kind::Word };
            tokens.push(Token {
                kind,
                text: value,
                offset,
            });
        } else if c.is_ascii_digit()
            || (c == '-'
                && chars.get(i + 1).is_some_and(|&(_, n)| n.is_ascii_digit())
                && !last_is_operand(&tokens))
        {
            let start = i;
            i += 1;
            while chars
                .get(i)
                .is_some_and(|&(_, n)| n.is_ascii_alphanumeric() || n == '.' || n == '_')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |&(o, _)| o);
            tokens.push(Token {
                kind: Kind::Number,
                text: text[chars[start].0..end].replace('_', ""),
                offset,
            });
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&(_, n)| n.is_alphanumeric() || n == '_')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |&(o, _)| o);
            tokens.push(Token {
                kind: Kind::Word,
                text: text[chars[start].0..end].to_string(),
                offset,
            });
        } else {
            let two: String = chars[i..chars.len().min(i + 2)]
                .iter()
                .map(|&(_, c)| c)
                .collect();
            let symbol = match two.as_str() {
                "<=" | ">=" | "<>" | "!=" | "==" => two,
                _ if "=<>(),".contains(c) => c.to_string(),
                _ => bail!(
                    "--where: unexpected '{c}' at character {} of '{text}'",
                    offset + 1
                ),
            };
            i += symbol.chars().count();
            tokens.push(Token {
                kind: Kind::Symbol,
                text: symbol,
                offset,
            });
        }
    }
    Ok(tokens)
}

fn last_is_operand(tokens: &[Token]) -> bool {
    tokens
        .last()
        .is_some_and(|t| t.kind != Kind::Symbol || t.text == ")")
}

struct Parser<'p, T> {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses and NOTs open around the current token.
    depth: usize,
    text: &'p str,
    projection: &'p mut Projection,
    table: std::marker::PhantomData<T>,
}

impl<T: Table> Parser<'_, T> {
    fn peek_keyword(&self, keyword: &str) -> bool {
        self.tokens
            .get(self.at)
            .is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let hit = self.peek_keyword(keyword);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        let hit = self
            .tokens
            .get(self.at)
            .is_some_and(|t| t.kind == Kind::Symbol && t.text == symbol);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn error<V>(&self, expected: &str) -> Result<V> {
        match self.tokens.get(self.at) {
            Some(token) => bail!(
                "--where: expected {expected} at character {} ('{}') of '{}'",
                token.offset + 1,
                token.text,
                self.text
            ),
            None => bail!("--where: expected {expected} at the end of '{}'", self.text),
        }
    }

    fn or(&mut self) -> Result<Expr> {
        let mut any = vec![self.and()?];
        while self.keyword("OR") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or(any)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut all = vec![self.not()?];
        while self.keyword("AND") {
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    /// One level deeper (a parenthesis or NOT); refused beyond MAX_DEPTH.
    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let offset = self
                .tokens
                .get(self.at)
                .map_or(self.text.len(), |t| t.offset);
            bail!(
                "--where: nested more than {MAX_DEPTH} levels deep (parentheses and NOT) at character {}; simplify the predicate",
                offset + 1
            );
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Expr> {
        if self.keyword("NOT") {
            self.deeper()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr> {
        if self.symbol("(") {
            self.deeper()?;
            let inner = self.or()?;
            if !self.symbol(")") {
                return self.error("')'");
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        if let Operand::Literal(Literal::Bool(b)) = left {
            if !self.at_comparison() {
                return Ok(Expr::Constant(Some(b)));
            }
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return self.error("NULL");
            }
            return Ok(Expr::IsNull(left, negated));
        }
        let negated = self.keyword("NOT");
        if self.keyword("LIKE") || self.peek_keyword("ILIKE") {
            let case_insensitive = self.keyword("ILIKE");
            let pattern = match self.tokens.get(self.at) {
                Some(t) if t.kind == Kind::Quoted => t.text.clone(),
                _ => return self.error("a 'pattern'"),
            };
            self.at += 1;
            return Ok(Expr::Like {
                operand: left,
                pattern,
                negated,
                case_insensitive,
            });
        }
        if self.keyword("IN") {
            if !self.symbol("(") {
                return self.error("'(' after IN");
            }
            let mut list = vec![self.typed_operand(&left)?];
            while self.symbol(",") {
                list.push(self.typed_operand(&left)?);
            }
            if !self.symbol(")") {
                return self.error("')'");
            }
            return Ok(Expr::In {
                operand: left,
                list,
                negated,
            });
        }
        if self.keyword("BETWEEN") {
            let low = self.typed_operand(&left)?;
            if !self.keyword("AND") {
                return self.error("AND");
            }
            let high = self.typed_operand(&left)?;
            let range = Expr::And(vec![
                Expr::Compare(left.clone(), CompareOp::Ge, low),
                Expr::Compare(left, CompareOp::Le, high),
            ]);
            return Ok(if negated {
                Expr::Not(Box::new(range))
            } else {
                range
            });
        }
        if negated {
            return self.error("LIKE, ILIKE, IN or BETWEEN after NOT");
        }
        let op = match self
            .tokens
            .get(self.at)
            .filter(|t| t.kind == Kind::Symbol)
            .map(|t| t.text.as_str())
        {
            Some("=") | Some("==") => CompareOp::Eq,
            Some("!=") | Some("<>") => CompareOp::Ne,
            Some("<") => CompareOp::Lt,
            Some("<=") => CompareOp::Le,
            Some(">") => CompareOp::Gt,
            Some(">=") => CompareOp::Ge,
            _ => return self.error("a comparison (=, <>, <, <=, >, >=, IS, LIKE, IN, BETWEEN)"),
        };
        self.at += 1;
        let right = self.typed_operand(&left)?;
        let left = self.retype(left, &right)?;
        Ok(Expr::Compare(left, op, right))
    }

    fn at_comparison(&self) -> bool {
        self.tokens
            .get(self.at)
            .is_some_and(|t| t.kind == Kind::Symbol && t.text != ")" && t.text != ",")
            || ["IS", "LIKE", "ILIKE", "IN", "BETWEEN", "NOT"]
                .iter()
                .any(|k| self.peek_keyword(k))
    }

    fn operand(&mut self) -> Result<Operand> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return self.error("a column or a value");
        };
        let operand = match token.kind {
            Kind::Quoted => Operand::Literal(Literal::Text(token.text)),
            Kind::Number => Operand::Literal(number(&token.text).ok_or_else(|| {
                anyhow::anyhow!(
                    "--where: '{}' is not a number (character {} of '{}')",
                    token.text,
                    token.offset + 1,
                    self.text
                )
            })?),
            Kind::Word if token.text.eq_ignore_ascii_case("NULL") => {
                Operand::Literal(Literal::Null)
            }
            Kind::Word if token.text.eq_ignore_ascii_case("TRUE") => {
                Operand::Literal(Literal::Bool(true))
            }
            Kind::Word if token.text.eq_ignore_ascii_case("FALSE") => {
                Operand::Literal(Literal::Bool(false))
            }
            Kind::Word => {
                let name = token.text.to_ascii_lowercase();
                Operand::Column(self.projection.require::<T>(&name, "--where")?)
            }
            Kind::Symbol => return self.error("a column or a value"),
        };
        self.at += 1;
        Ok(operand)
    }

    /// An operand compared with `other`: text literals compared with a
    /// timestamp column are read as timestamps.
    fn typed_operand(&mut self, other: &Operand) -> Result<Operand> {
        let operand = self.operand()?;
        self.retype(operand, other)
    }

    fn retype(&self, operand: Operand, other: &Operand) -> Result<Operand> {
        let Operand::Column(column) = *other else {
            return Ok(operand);
        };
        let ty = self.projection.types[column];
        let name = &self.projection.names[column];
        match (&operand, ty) {
            (Operand::Literal(Literal::Text(text)), ColumnType::Timestamp) => {
                match crate::store::user_time::time(text) {
                    Ok(ts) => Ok(Operand::Literal(Literal::Timestamp(ts))),
                    Err(why) => bail!("--where: not a timestamp for column {name}: {why}"),
                }
            }
            (Operand::Literal(Literal::Text(text)), ColumnType::Int64) => match text.parse::<i64>()
            {
                Ok(v) => Ok(Operand::Literal(Literal::Int(v))),
                Err(_) => bail!("--where: column {name} holds numbers, not '{text}'"),
            },
            (Operand::Literal(Literal::Int(_) | Literal::Float(_)), ColumnType::Text) => {
                bail!("--where: column {name} holds text: quote the value ('…')")
            }
            _ => Ok(operand),
        }
    }
}

fn number(text: &str) -> Option<Literal> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(Literal::Int(v));
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Literal::Float)
}

#[cfg(test)]
mod tests {
    use crate::report::filter::tests::check;
    use crate::report::read::Cell;

    #[test]
    fn clear_errors() {
        let row = [("tid", Cell::Int(1))];
        for (predicate, message) in [
            ("nosuch = 1", "no column 'nosuch' in table samples"),
            ("tid = ", "expected a column or a value at the end"),
            ("tid = 1 AND", "expected a column or a value at the end"),
            ("comm = 5", "holds text"),
            ("tid = 'x'", "holds numbers"),
            ("ts > 'yesterday'", "not a timestamp"),
            ("comm = 'unterminated", "unterminated"),
            ("tid ; 1", "unexpected ';'"),
            ("(tid = 1", "expected ')'"),
            ("tid = 1 tid", "unexpected 'tid'"),
        ] {
            let err = check(predicate, &row).unwrap_err().to_string();
            assert!(err.contains(message), "{predicate}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let row = [("tid", Cell::Int(1))];
        let deep = format!("{}tid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
        let err = check(&deep, &row).unwrap_err().to_string();
        assert!(err.contains("nested more than 64 levels"), "{err}");
        let nots = format!("{}tid = 1", "NOT ".repeat(10_000));
        assert!(check(&nots, &row).is_err());
        // Long flat chains are fine: one node, evaluated in a loop.
        let chain = vec!["tid = 1"; 10_000].join(" AND ");
        assert!(check(&chain, &row).unwrap());
        let chain = vec!["tid = 2"; 10_000].join(" OR ");
        assert!(!check(&chain, &row).unwrap());
        let nested = format!("{}tid = 1{}", "(".repeat(64), ")".repeat(64));
        assert!(check(&nested, &row).unwrap());
    }
}
