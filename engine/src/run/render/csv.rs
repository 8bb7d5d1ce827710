//! `results.csv`: every value of every table, one per line.

use std::fmt::Write as _;

use super::doc::Document;

pub fn render(d: &Document) -> String {
    let mut csv = String::from("table,row,model,task,metric,value\n");
    for (k, t) in d.tables.iter().enumerate() {
        for row in &t.rows {
            let model = row.model.as_deref().unwrap_or("");
            for (task, v) in t.tasks.iter().zip(&row.values) {
                if let Some(v) = v {
                    let _ = writeln!(csv, "{k},\"{}\",{model},{task},{},{v}", row.label, t.metric);
                }
            }
            if let Some(a) = row.avg() {
                let _ = writeln!(csv, "{k},\"{}\",{model},Avg,{},{a}", row.label, t.metric);
            }
        }
    }
    csv
}
