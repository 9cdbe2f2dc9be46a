//! The `storeflow` binary: wires the parts together behind one CLI.

mod backends;
mod cli;
mod commands;
mod config;
mod connect;
mod pipeline;
mod report;
mod sql;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, DlqCommand, GroupsCommand, LogCommand, SchemasCommand, SinksCommand, SqlCommand, TopicsCommand};
use config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().init(),
    }
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(place) => {
            backends::apply_place(&mut config, &place);
            commands::run::run(&backends::open(&config)?, &config, &[], true)?;
        }
        Command::Process { place, only, ops_listen } => {
            backends::apply_place(&mut config, &place);
            if let Some(l) = ops_listen {
                config.ops_listen = l;
            }
            commands::run::run(&backends::open(&config)?, &config, &only, false)?;
        }
        Command::Demo { place, traffic } => {
            backends::apply_place(&mut config, &place);
            commands::demo::run(&backends::open(&config)?, &config, &traffic)?;
        }
        Command::Dlq(DlqCommand::List { topic, limit, place }) => {
            backends::apply_place(&mut config, &place);
            commands::dlq::list(&backends::open(&config)?, &topic, limit)?;
        }
        Command::Dlq(DlqCommand::Replay { topic, place }) => {
            backends::apply_place(&mut config, &place);
            commands::dlq::replay(&backends::open(&config)?, &topic)?;
        }
        Command::Simulate { place, traffic } => {
            backends::apply_place(&mut config, &place);
            commands::simulate::run(&backends::open(&config)?, &traffic, &config.runtime.app)?;
        }
        Command::Schemas(SchemasCommand::Check(dirs)) => return commands::schemas::check(&dirs),
        Command::Schemas(SchemasCommand::Freeze(dirs)) => commands::schemas::freeze(&dirs)?,
        Command::Schemas(SchemasCommand::List) => commands::schemas::list()?,
        Command::Schemas(SchemasCommand::Example { name }) => commands::schemas::example(&name)?,
        Command::Schemas(SchemasCommand::Validate { file }) => return commands::schemas::validate(file.as_deref()),
        Command::Topics(TopicsCommand::List(place)) => {
            backends::apply_place(&mut config, &place);
            commands::topics::list(&backends::open(&config)?)?;
        }
        Command::Topics(TopicsCommand::Tail { topic, from, follow, limit, partition, place }) => {
            backends::apply_place(&mut config, &place);
            let tail = commands::topics::Tail { from, follow, limit, partition };
            commands::topics::tail(&backends::open(&config)?, &topic, &tail)?;
        }
        Command::Topics(TopicsCommand::Produce { topic, skip_invalid, place }) => {
            backends::apply_place(&mut config, &place);
            return commands::topics::produce(&backends::open(&config)?, &config, &topic, skip_invalid);
        }
        Command::Groups(GroupsCommand::List(place)) => {
            backends::apply_place(&mut config, &place);
            commands::groups::list(&backends::open(&config)?, &config)?;
        }
        Command::Groups(GroupsCommand::Describe { group, place }) => {
            backends::apply_place(&mut config, &place);
            commands::groups::describe(&backends::open(&config)?, &config, &group)?;
        }
        Command::Groups(GroupsCommand::Reset { group, to, topic, execute, place }) => {
            backends::apply_place(&mut config, &place);
            commands::groups::reset(&backends::open(&config)?, &config, &group, &to, topic.as_deref(), execute)?;
        }
        Command::Sinks(SinksCommand::Rebuild { sink, quiet, place }) => {
            backends::apply_place(&mut config, &place);
            commands::sinks::rebuild(&backends::open(&config)?, &config, &sink, quiet)?;
        }
        Command::Log(LogCommand::Check { data_dir }) => return commands::log::check(&data_dir.unwrap_or(config.data_dir)),
        Command::Log(LogCommand::Repair { data_dir, partition, truncate_at, yes }) => {
            return commands::log::repair(&data_dir.unwrap_or(config.data_dir), &partition, truncate_at, yes);
        }
        Command::Sql(SqlCommand::Check { file }) => return commands::sql::check(&file, &config),
        Command::Sql(SqlCommand::Explain { file }) => return commands::sql::explain(&file, &config),
        Command::Sql(SqlCommand::Run { file, from_beginning: _, limit, place }) => {
            backends::apply_place(&mut config, &place);
            return commands::sql::run(&backends::open(&config)?, &config, &file, limit);
        }
        Command::Config => print!("{}", toml_string(&config)?),
    }
    Ok(true)
}

fn toml_string(config: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}
