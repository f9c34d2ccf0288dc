//! Exact conversion of a force export's seizure quantity and unit (contract §6) to the wire's integer units.
//!
//! Every unit is a power of ten of its wire unit, so conversion is a shift of the decimal point done on the
//! digits themselves: no floating point is involved, and a quantity that would need rounding is refused.

use crate::domain::event::MAX_SEIZURE_QUANTITY;
use crate::domain::SeizureItem;

/// The units a force may use for `item`, each with the power of ten that turns it into the wire unit.
fn units_of(item: SeizureItem) -> &'static [(&'static str, u32)] {
    match item {
        SeizureItem::Firearm | SeizureItem::Weapon => &[("count", 0)],
        SeizureItem::DrugClassA | SeizureItem::DrugClassB => &[("mg", 0), ("g", 3), ("kg", 6)],
        SeizureItem::Cash => &[("pence", 0), ("GBP", 2)],
    }
}

/// The wire unit of `item`, as named in messages.
fn wire_unit(item: SeizureItem) -> &'static str {
    match item {
        SeizureItem::Firearm | SeizureItem::Weapon => "items",
        SeizureItem::DrugClassA | SeizureItem::DrugClassB => "milligrams",
        SeizureItem::Cash => "pence",
    }
}

fn unit_names(item: SeizureItem) -> String {
    units_of(item).iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// A value for a message, cut short: export values may be long or hostile.
fn cut(value: &str) -> (String, &'static str) {
    let more = if value.chars().count() > 40 { "…" } else { "" };
    (value.chars().take(40).collect(), more)
}

/// A value quoted for a message, cut short.
pub(crate) fn quoted(value: &str) -> String {
    let (shown, more) = cut(value);
    format!("{shown:?}{more}")
}

/// The unit's name (its default when absent) and the power of ten that turns it into the wire unit.
/// Only counted items have a default: guessing grams for a drug or pounds for cash could be off by 1000.
pub fn check_unit(item: SeizureItem, unit: Option<&str>) -> Result<(&'static str, u32), String> {
    let units = units_of(item);
    match unit {
        None if units.len() == 1 => Ok(units[0]),
        None => Err(format!("a unit is required for {item} (one of {})", unit_names(item))),
        Some(u) => units
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(u))
            .copied()
            .ok_or_else(|| format!("{} is not a unit for {item} (one of {})", quoted(u), unit_names(item))),
    }
}

/// Converts `quantity` in `unit` to the wire integer for `item`: a count, milligrams or pence, in 1..=10^12.
pub fn to_wire_quantity(item: SeizureItem, quantity: &str, unit: Option<&str>) -> Result<i64, String> {
    let (unit_name, shift) = check_unit(item, unit)?;
    let (int, frac) = quantity.split_once('.').unwrap_or((quantity, ""));
    let plain = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit());
    // Both sides of a '.' must have digits: ".5" and "5." look like truncated data.
    if int.is_empty() || (quantity.contains('.') && frac.is_empty()) || !plain(int) || !plain(frac) {
        return Err(format!("{} is not a plain decimal quantity (e.g. 12 or 1.25)", quoted(quantity)));
    }
    let (text, more) = cut(quantity);
    let shown = format!("{text}{more} {unit_name}");
    let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
    let limit = || format!("{shown} is above the limit 10^12 {}", wire_unit(item));
    if frac.len() > shift as usize {
        return Err(format!("{shown} is not a whole number of {}", wire_unit(item)));
    }
    // At most 18 integer digits keeps the i128 arithmetic below far from overflow; more is over the limit anyway.
    if int.len() > 18 {
        return Err(limit());
    }
    let number = |digits: &str| if digits.is_empty() { Ok(0) } else { digits.parse::<i128>() };
    let (int_value, frac_value) = match (number(int), number(frac)) {
        (Ok(i), Ok(f)) => (i, f),
        _ => return Err(format!("{} is not a plain decimal quantity", quoted(quantity))),
    };
    let frac_shift = shift - frac.len() as u32;
    let wire = int_value * 10i128.pow(shift) + frac_value * 10i128.pow(frac_shift);
    if wire < 1 {
        return Err(format!("{shown} is {wire} {}, below the minimum 1", wire_unit(item)));
    }
    if wire > i128::from(MAX_SEIZURE_QUANTITY) {
        return Err(format!("{shown} is {wire} {}, above the limit 10^12", wire_unit(item)));
    }
    i64::try_from(wire).map_err(|_| limit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeizureItem::*;

    fn ok(item: SeizureItem, q: &str, unit: Option<&str>) -> i64 {
        to_wire_quantity(item, q, unit).unwrap_or_else(|e| panic!("{q} {unit:?}: {e}"))
    }
    fn err(item: SeizureItem, q: &str, unit: Option<&str>) -> String {
        to_wire_quantity(item, q, unit).expect_err(q)
    }

    #[test]
    fn counts_default_to_count() {
        assert_eq!(ok(Firearm, "3", None), 3);
        assert_eq!(ok(Weapon, "12", Some("count")), 12);
        assert_eq!(ok(Weapon, "12.000", Some("count")), 12);
        assert_eq!(err(Firearm, "1.5", None), "1.5 count is not a whole number of items");
        assert!(err(Firearm, "2", Some("g")).contains("\"g\" is not a unit for FIREARM (one of count)"));
    }

    #[test]
    fn drugs_convert_exactly_to_milligrams() {
        assert_eq!(ok(DrugClassA, "1.25", Some("kg")), 1_250_000);
        assert_eq!(ok(DrugClassA, "0.5", Some("g")), 500);
        assert_eq!(ok(DrugClassB, "1.234", Some("g")), 1234);
        assert_eq!(ok(DrugClassB, "0.000001", Some("kg")), 1);
        assert_eq!(ok(DrugClassB, "750", Some("mg")), 750);
        assert_eq!(ok(DrugClassB, "007.50", Some("g")), 7500);
        assert_eq!(err(DrugClassA, "1.2345", Some("g")), "1.2345 g is not a whole number of milligrams");
        assert_eq!(err(DrugClassA, "0.5", Some("mg")), "0.5 mg is not a whole number of milligrams");
        assert!(err(DrugClassA, "5", None).contains("a unit is required for DRUG_CLASS_A (one of mg, g, kg)"));
        // Spreadsheets write units in any case; the shown unit is the contract's.
        assert_eq!(ok(DrugClassA, "1.5", Some("KG")), 1_500_000);
        assert_eq!(err(DrugClassA, "0.5", Some("MG")), "0.5 mg is not a whole number of milligrams");
        assert_eq!(ok(Cash, "2", Some("gbp")), 200);
        assert!(err(DrugClassA, "5", Some("GBP")).contains("is not a unit"));
    }

    #[test]
    fn cash_converts_to_pence() {
        assert_eq!(ok(Cash, "1250.50", Some("GBP")), 125_050);
        assert_eq!(ok(Cash, "12", Some("GBP")), 1200);
        assert_eq!(ok(Cash, "99", Some("pence")), 99);
        assert_eq!(err(Cash, "0.001", Some("GBP")), "0.001 GBP is not a whole number of pence");
        assert!(err(Cash, "12", None).contains("required for CASH (one of pence, GBP)"));
        assert!(err(Cash, "12", Some("pounds")).contains("\"pounds\" is not a unit for CASH"));
    }

    #[test]
    fn rejects_anything_but_plain_decimals() {
        for bad in ["", " 1", "1 ", "+1", "-1", "1e3", "1E3", "1,000", "1 000", ".5", "5.", "1.2.3", "0x10", "½", "١"]
        {
            let e = err(DrugClassA, bad, Some("g"));
            assert!(e.contains("is not a plain decimal quantity"), "{bad:?}: {e}");
        }
        let e = err(Cash, &"9".repeat(100), Some("pence"));
        assert!(e.contains('…') && e.len() < 100, "long values are cut: {e}");
    }

    #[test]
    fn range_is_one_to_ten_to_the_twelve() {
        assert_eq!(ok(DrugClassA, "1000000", Some("kg")), 1_000_000_000_000);
        assert_eq!(ok(Cash, "10000000000", Some("GBP")), 1_000_000_000_000);
        assert_eq!(ok(Cash, "1", Some("pence")), 1);
        assert_eq!(err(Cash, "0", Some("pence")), "0 pence is 0 pence, below the minimum 1");
        assert_eq!(err(DrugClassA, "0.000", Some("kg")), "0.000 kg is 0 milligrams, below the minimum 1");
        assert_eq!(
            err(DrugClassA, "1000000.001", Some("kg")),
            "1000000.001 kg is 1000000001000 milligrams, above the limit 10^12"
        );
        assert!(err(Firearm, "1000000000001", None).contains("above the limit 10^12"));
        // Far beyond i64 and i128: refused by the digit count, without overflow.
        assert!(err(Cash, &"9".repeat(60), Some("GBP")).contains("above the limit 10^12 pence"));
        assert_eq!(ok(Cash, &format!("{}.5", "0".repeat(60)), Some("GBP")), 50);
        assert_eq!(ok(Cash, &format!("{}1.{}", "0".repeat(60), "0".repeat(60)), Some("GBP")), 100);
    }
}
