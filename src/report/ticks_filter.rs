//! The part of a `--where` that restricts *time*, applied to the ticks.
//!
//! An average divides the rows' thread time by the time sampled, so a
//! predicate that keeps the rows of some times must keep the ticks of the
//! same times: the top-level AND conditions that use `ts` (and only
//! columns `ticks` has too) filter the ticks as well. A `ts` condition
//! tangled with another column (`ts > x OR comm = 'y'`) cannot be applied
//! to the ticks and is refused with advice (`--from`/`--to`). The rule
//! works on the parsed predicate, so it survives a change of engine.

use anyhow::{bail, Result};

use super::filter::{Expr, Operand};
use super::read::Projection;
use crate::store::schema::Table;

/// Columns of `expr`, by position in its projection.
fn columns_of(expr: &Expr, out: &mut Vec<usize>) {
    let mut operand = |o: &Operand| {
        if let Operand::Column(i) = o {
            out.push(*i);
        }
    };
    match expr {
        Expr::And(all) | Expr::Or(all) => all.iter().for_each(|e| columns_of(e, out)),
        Expr::Not(e) => columns_of(e, out),
        Expr::Compare(a, _, b) => {
            operand(a);
            operand(b);
        }
        Expr::IsNull(a, _) | Expr::Like { operand: a, .. } => operand(a),
        Expr::In {
            operand: a, list, ..
        } => {
            operand(a);
            list.iter().for_each(operand);
        }
        Expr::Constant(_) => {}
    }
}

/// `expr` with each column moved to the position `place` gives it.
fn remap(expr: &Expr, place: &mut dyn FnMut(usize) -> Result<usize>) -> Result<Expr> {
    let mut operand = |o: &Operand| -> Result<Operand> {
        Ok(match o {
            Operand::Column(i) => Operand::Column(place(*i)?),
            other => other.clone(),
        })
    };
    Ok(match expr {
        Expr::And(all) => Expr::And(all.iter().map(|e| remap(e, place)).collect::<Result<_>>()?),
        Expr::Or(any) => Expr::Or(any.iter().map(|e| remap(e, place)).collect::<Result<_>>()?),
        Expr::Not(e) => Expr::Not(Box::new(remap(e, place)?)),
        Expr::Compare(a, op, b) => Expr::Compare(operand(a)?, *op, operand(b)?),
        Expr::IsNull(a, negated) => Expr::IsNull(operand(a)?, *negated),
        Expr::Like {
            operand: a,
            pattern,
            negated,
            case_insensitive,
        } => Expr::Like {
            operand: operand(a)?,
            pattern: pattern.clone(),
            negated: *negated,
            case_insensitive: *case_insensitive,
        },
        Expr::In {
            operand: a,
            list,
            negated,
        } => Expr::In {
            operand: operand(a)?,
            list: list.iter().map(&mut operand).collect::<Result<_>>()?,
            negated: *negated,
        },
        Expr::Constant(v) => Expr::Constant(*v),
    })
}

/// The part of a `--where` over table `S` that restricts *time*, as a
/// predicate over table `T` (`ticks`): the top-level AND conditions that
/// use `ts` and only columns `T` has too. A condition that uses `ts` with
/// a column `T` lacks (`ts > x OR comm = 'y'`) cannot restrict the time
/// sampled and is an error. None when no condition uses `ts`.
pub fn ticks_filter<T: Table>(
    expr: &Expr,
    projection: &Projection,
    ticks: &mut Projection,
) -> Result<Option<Expr>> {
    let conditions: Vec<&Expr> = match expr {
        Expr::And(all) => all.iter().collect(),
        other => vec![other],
    };
    let mut kept = Vec::new();
    for condition in conditions {
        let mut used = Vec::new();
        columns_of(condition, &mut used);
        let names: Vec<&str> = used.iter().map(|&i| projection.names[i].as_str()).collect();
        if !names.contains(&"ts") {
            continue;
        }
        let others: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !T::columns().iter().any(|c| c.name == *name))
            .collect();
        if let Some(other) = others.first() {
            bail!(
                "--where: a condition joins ts with {other}, so the time sampled cannot be \
                 limited the same way; give the time range with --from/--to, or as its own \
                 condition (ts >= '…' AND …)"
            );
        }
        kept.push(remap(condition, &mut |i| {
            ticks.require::<T>(&projection.names[i], "--where")
        })?);
    }
    Ok(match kept.len() {
        0 => None,
        1 => kept.pop(),
        _ => Some(Expr::And(kept)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::filter::{parse, CompareOp};
    use crate::store::schema::Samples;

    #[test]
    fn time_conditions_also_filter_the_ticks() {
        use crate::store::schema::Ticks;
        let split = |predicate: &str| -> Result<Option<(Expr, Vec<String>)>> {
            let mut projection = Projection::of::<Samples>(&[], "test").unwrap();
            let expr = parse::<Samples>(predicate, &mut projection)?;
            let mut ticks = Projection::of::<Ticks>(&[], "test").unwrap();
            Ok(ticks_filter::<Ticks>(&expr, &projection, &mut ticks)?
                .map(|e| (e, ticks.names.clone())))
        };
        assert!(split("comm = 'x' AND tid > 3").unwrap().is_none());
        let (expr, names) = split("ts >= '2026-11-22 13:00' AND comm = 'x'")
            .unwrap()
            .unwrap();
        assert_eq!(names, ["ts"]);
        assert!(matches!(
            expr,
            Expr::Compare(Operand::Column(0), CompareOp::Ge, _)
        ));
        let (expr, _) = split("ts >= '2026-11-22 13:00' AND (ts < '2026-11-22 14:00' OR weight_us > 5) AND state = 'DISK'")
            .unwrap()
            .unwrap();
        assert!(
            matches!(&expr, Expr::And(all) if all.len() == 2),
            "{expr:?}"
        );
        let err = split("ts > '2026-11-22 13:00' OR comm = 'y'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("joins ts with comm") && err.contains("--from/--to"),
            "{err}"
        );
    }
}
