//! Plain-text tables with aligned columns, for terminals and for `grep`/`awk`.

/// Renders `rows` under `headers`: columns padded to their widest cell, two spaces apart, no
/// trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_the_widest_cell() {
        let text = render(
            &["NAME", "STATE"],
            &[
                vec!["shop-source".into(), "RUNNING".into()],
                vec!["x".into(), "PAUSED".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME         STATE\nshop-source  RUNNING\nx            PAUSED\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(render(&["NAME", "TYPE"], &[]), "NAME  TYPE\n");
    }
}
