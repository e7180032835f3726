# The decision table: test/decide/decide_table.c feeds slot_sync_decide()
# (src/sync_decide.c, compiled here from the extension's own source) one
# input per rule and checks the plan it returns.  Built with coverage when
# gcov is there, so that a rule without a case fails this test; and the
# reason codes the code knows must be the ones the docs list.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Utils;
use Test::More;

my $top = abs_path(dirname(__FILE__) . '/../..');
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
chomp(my $incdir = `$pg_config --includedir-server`);
chomp(my $pkglibdir = `$pg_config --pkglibdir`);
chomp(my $cc = `$pg_config --cc`);
my $dir = PostgreSQL::Test::Utils::tempdir('decide');
my $coverage = system('gcov --version >/dev/null 2>&1') == 0;

my @cmd = (
	$cc, '-O0', ($coverage ? ('--coverage') : ()),
	"-I$top/include", "-I$incdir",
	'-o', "$dir/decide_table",
	"$top/test/decide/decide_table.c", "$top/src/sync_decide.c",
	"-L$pkglibdir", '-lpgcommon', '-lpgport');
my ($out, $err) = ('', '');
ok(IPC::Run::run(\@cmd, '>', \$out, '2>', \$err, init => sub { chdir $dir }),
	'the decision table builds')
  or diag $err;

IPC::Run::run(["$dir/decide_table"], '>', \$out, '2>', \$err,
	init => sub { chdir $dir });
my $cases = 0;
foreach my $line (split /\n/, $out)
{
	if ($line =~ /^(not )?ok \d+ - (.*)$/)
	{
		ok(!defined $1, $2);
		$cases++;
	}
	elsif ($line =~ /^#/)
	{
		diag $line;
	}
}
cmp_ok($cases, '>=', 30, "the table has its cases ($cases)");

# --names: what the code calls its reason codes and states
IPC::Run::run(["$dir/decide_table", '--names'], '>', \$out, '2>', \$err,
	init => sub { chdir $dir });
my @codes = sort map { /^reason_code (\S+)/ ? $1 : () } split /\n/, $out;
cmp_ok(scalar(@codes), '>=', 15, 'the code names its reason codes');

SKIP:
{
	skip 'gcov is not installed', 1 unless $coverage;
	my ($gout, $gerr) = ('', '');
	IPC::Run::run([ 'gcov', '-o', $dir, 'decide_table-sync_decide.gcda' ],
		'>', \$gout, '2>', \$gerr, init => sub { chdir $dir });
	my ($pct) = $gout =~ /File '[^']*sync_decide\.c'\nLines executed:([\d.]+)%/;
	is($pct, '100.00', 'every line of sync_decide.c is run by some case')
	  or diag $gout;
}

# Every reason code is documented where DBAs and tools look, and no
# documented code is unknown to the code.
foreach my $doc ('docs/reference.md', 'docs/monitoring.md')
{
	open(my $fh, '<', "$top/$doc") or die "could not open $doc: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	my ($section) = $text =~ /<!-- reason codes -->(.*?)<!-- end reason codes -->/s;
	ok(defined $section, "$doc marks its list of reason codes");
	$section //= '';
	my @documented = sort ($section =~ /^\| `([a-z_]+)` \|/mg);
	is_deeply(\@documented, \@codes,
		"$doc lists exactly the reason codes the code emits");
}

done_testing();
