//! Times runs through ccs::runner::process::execute (old: clone/vfork, new: Command).
//! usage: spawnbench PROGRAM RUNS HEAP_MB [ARGS...]
//! With PROGRAM = the `stamp` helper, also the time from calling execute to the child's main.
#[cfg(feature = "new")]
use ccs::bench::{execute_cli, Cancel, Invocation};
#[cfg(not(feature = "new"))]
use ccs::runner::{process, Cancel, Invocation};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (program, runs, heap_mb) = (a[1].clone(), a[2].parse::<usize>().unwrap(), a[3].parse::<usize>().unwrap());
    // A server-like parent: a touched heap and idle threads.
    let mut ballast = vec![0u8; heap_mb << 20];
    for page in ballast.chunks_mut(4096) {
        page[0] = 1;
    }
    for _ in 0..16 {
        std::thread::spawn(|| std::thread::park());
    }
    let inv = Invocation {
        program,
        args: a[4..].to_vec(),
        prompt: String::new(),
        cwd: "/tmp".into(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap())],
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(1),
        lines: None,
    };
    let stamped = inv.program.ends_with("stamp");
    let (mut total, mut to_main) = (Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let t = Instant::now();
        #[cfg(feature = "new")]
        let raw = execute_cli(&inv, &Cancel::default(), &mut |_| true).unwrap();
        #[cfg(not(feature = "new"))]
        let raw = process::execute(&inv, &Cancel::default()).unwrap();
        let took = t.elapsed();
        assert_eq!(raw.exit_code, Some(0), "{}", raw.stderr_tail);
        if i < 3 {
            continue; // warm-up
        }
        total.push(took.as_secs_f64() * 1e3);
        if stamped {
            let child: u128 = String::from_utf8_lossy(&raw.stdout).trim().parse().unwrap();
            to_main.push((child - wall) as f64 / 1e6);
        }
    }
    report("whole run", &mut total);
    if stamped {
        report("execute() called -> child's main", &mut to_main);
    }
    std::hint::black_box(&ballast);
}

fn report(what: &str, ms: &mut [f64]) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!("{what}: n={} median {:.3} ms, mean {:.3}, p95 {:.3}, min {:.3}, max {:.3}", ms.len(), pct(0.5), mean, pct(0.95), ms[0], ms[ms.len() - 1]);
}
