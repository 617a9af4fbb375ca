//! Parsing of the kernel command line.

/// What the command line asks the kernel to do after boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Print the banner and power off.
    None,
    /// Run the self-tests whose names contain `filter` (all if empty).
    Test {
        /// Substring filter on test names.
        filter: &'a str,
    },
    /// Trigger an unexpected exception on purpose (checks the fatal path).
    Fatal,
    /// Overflow the kernel stack on purpose (checks the overflow report).
    StackOverflow,
    /// Run the page-allocator benchmark.
    BenchAlloc,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    /// The requested action (the last action word wins).
    pub action: Action<'a>,
    /// `init=NAME args...`: after the action, start `init` to run the
    /// program NAME with the rest of the command line as its arguments.
    pub init: Option<(&'a str, &'a str)>,
    /// `initrd=NAME`: the name the initrd's program is run by
    /// (default `initrd`).
    pub initrd_name: &'a str,
    /// `contpte=on|off`: whether arm64 folds 64 KiB blocks of user
    /// entries from boot (default on; the knob
    /// `/sys/kernel/mm/folium/contpte` changes it later).
    pub contpte: Option<bool>,
    /// `maxcpus=N` (`nosmp`: 1): bring up at most N CPUs, the boot CPU
    /// included, as Linux reads it (0 counts as 1).
    pub maxcpus: Option<usize>,
}

impl<'a> Args<'a> {
    /// Parses whitespace-separated words: `test`, `test=<filter>`, `fatal-test`,
    /// `stack-overflow-test`, `bench-alloc`, `initrd=NAME`, `contpte=on|off`,
    /// `maxcpus=N`, `nosmp`, and `init=NAME` (the words
    /// after it are NAME's arguments, as Linux hands them to init).
    pub fn parse(cmdline: &'a str) -> Self {
        let mut action = Action::None;
        let mut init = None;
        let mut initrd_name = "initrd";
        let mut contpte = None;
        let mut maxcpus = None;
        let mut rest = cmdline;
        while let Some(word) = rest.split_ascii_whitespace().next() {
            let at = rest.find(word).unwrap_or(0) + word.len();
            rest = &rest[at..];
            if let Some(name) = word.strip_prefix("init=") {
                init = Some((name, rest.trim()));
                break;
            }
            match word.split_once('=') {
                None if word == "test" => action = Action::Test { filter: "" },
                Some(("test", f)) => action = Action::Test { filter: f },
                None if word == "fatal-test" => action = Action::Fatal,
                None if word == "stack-overflow-test" => action = Action::StackOverflow,
                None if word == "bench-alloc" => action = Action::BenchAlloc,
                Some(("initrd", name)) if !name.is_empty() => initrd_name = name,
                Some(("contpte", "on")) => contpte = Some(true),
                Some(("contpte", "off")) => contpte = Some(false),
                Some(("maxcpus", n)) => maxcpus = n.parse::<usize>().ok().map(|n| n.max(1)),
                None if word == "nosmp" => maxcpus = Some(1),
                _ => {}
            }
        }
        Args {
            action,
            init,
            initrd_name,
            contpte,
            maxcpus,
        }
    }
}
