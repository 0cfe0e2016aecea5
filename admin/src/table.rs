//! A tiny aligned-table formatter for the CLI's human output: a dependency for
//! this would cost more build time than the twenty lines it replaces.

/// Formats rows under headers, columns left-aligned and padded to the widest
/// cell (counted in chars), separated by two spaces, without trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A two-column `field  value` table for one object.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs.iter().map(|(k, v)| vec![(*k).to_owned(), v.clone()]).collect();
    let mut t = table(&["FIELD", "VALUE"], &rows);
    // The header adds nothing to a field list; drop it.
    if let Some(i) = t.find('\n') {
        t.drain(..=i);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = table(&["ID", "NAME"], &[vec!["k1".into(), "short".into()], vec!["key-two".into(), "é".into()]]);
        assert_eq!(t, "ID       NAME\nk1       short\nkey-two  é\n");
        assert_eq!(fields(&[("id", "1".into()), ("username", "ann".into())]), "id        1\nusername  ann\n");
    }
}
