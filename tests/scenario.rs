//! The demo scenario end to end on the real broker: six forces' agents →
//! Kafka → rollup → store, checked against the exports' independent
//! reference model (deploy/local/refmodel.py) and the scenario's figures.

mod common;

use std::time::Duration;

use common::*;

const SCENARIO_TABLE: &[(&str, i64)] = &[
    ("arrests", 290),
    ("people_charged", 163),
    ("charges", 377),
    ("charges_drug_trafficking", 287),
    ("charges_class_a", 238),
    ("charges_class_b", 49),
    ("lines_closed", 92),
    ("people_safeguarded", 110),
    ("referrals_support", 31),
    ("referrals_nrm", 3),
    ("people_engaged", 9878),
    ("firearms", 17),
    ("weapons", 56),
    ("drugs_class_a_mg", 7_600_000),
    ("drugs_class_b_mg", 9_300_000),
    ("cash_pence", 21_456_800),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_totals_match_the_published_figures() {
    let dir = tempfile::tempdir().unwrap();
    let hub = scenario_hub(dir.path());
    create_topics(&hub).await;
    let rollup = RunningRollup::start(&hub).await;
    let (expected, summaries) = publish_scenario(&hub, dir.path()).await;
    for (run, got) in expected["agent_runs"].as_array().unwrap().iter().zip(&summaries) {
        let got = serde_json::to_value(got).unwrap();
        for k in ["published", "unchanged", "withdrawn", "rejected"] {
            assert_eq!(got[k], run[k], "{} {}: {k}", run["force"], run["file"]);
        }
    }
    // Repeated deliveries: Kent sends everything again.
    let kent = agent(&hub, "KENT", dir.path().join("state/KENT"), &SCENARIO_SECRETS);
    assert!(jointops::agent::resend(&kent, false).await.unwrap() > 0);

    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let totals = totals(&hub, "CLIW-2023-10");
    for (name, want) in SCENARIO_TABLE {
        assert_eq!(totals.joint.get(name), Some(*want), "joint {name}");
    }
    for (name, want) in expected["totals"].as_object().unwrap() {
        assert_eq!(totals.joint.get(name), want.as_i64(), "joint {name} (reference model)");
    }
    let forces = expected["forces"].as_object().unwrap();
    assert_eq!(totals.forces.keys().collect::<Vec<_>>(), forces.keys().collect::<Vec<_>>());
    for (force, row) in forces {
        for (name, want) in row.as_object().unwrap() {
            assert_eq!(totals.forces[force].get(name), want.as_i64(), "{force} {name}");
        }
    }
    let dead: std::collections::BTreeMap<String, i64> =
        serde_json::from_value(expected["dead_letters"].clone()).unwrap();
    assert_eq!(dead_letters(&hub), dead);
    let stats = rollup.stop().await;
    assert!(stats.unchanged > 0, "the resend was absorbed as duplicates: {stats:?}");
}
