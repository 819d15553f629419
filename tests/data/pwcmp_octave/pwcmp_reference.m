% Reference JOD values of the pwcmp toolbox for tests/test_userstudy.py (see the comments at PWCMP and PWCMP_ACTIVE).
%
%   git --git-dir=<mirror of github.com/mantiuk/pwcmp> archive <commit> | tar x -C /tmp/pwcmp
%   PWCMP=/tmp/pwcmp FMINUNC_TOL=1e-14 octave --no-gui --norc -q tests/data/pwcmp_octave/pwcmp_reference.m
%
% Run from the repository root. It scales the thesis's shipped count matrices and the saved actively
% sampled answer sets (tests/data/active_answers_*.csv, written by make_active_answers.py beside this file).
% pw_scale warns of the disconnected parts of active_18_early's comparison graph, which it joins by ties.
% The shims beside this file stand in for the functions GNU Octave 7 lacks (normcdf, normpdf, norminv,
% optimoptions); pw_scale.m itself runs unchanged.
here = fileparts(mfilename('fullpath'));
addpath(here);
addpath(getenv('PWCMP'));
studies = {'denoise', 'mri', 'active_6', 'active_18', 'active_18_early'};
files = {fullfile('src', 'lossbench', 'userstudy', 'data', 'thesis_denoise.csv'), ...
         fullfile('src', 'lossbench', 'userstudy', 'data', 'thesis_mri.csv'), ...
         fullfile('tests', 'data', 'active_answers_6.csv'), ...
         fullfile('tests', 'data', 'active_answers_18.csv'), ...
         fullfile('tests', 'data', 'active_answers_18_early.csv')};
variants = { {}, {'prior', 'none'}, {'regularization', 'fix0'} };
names = {'default', 'prior_none', 'fix0'};
printf('octave %s, FMINUNC_TOL=%s\n', version(), getenv('FMINUNC_TOL'));
for s = 1:numel(studies)
  % Header row and the "chosen" column skipped: D(i, j) = times condition i was chosen over j.
  D = dlmread(files{s}, ',', 1, 1);
  for v = 1:numel(variants)
    Q = pw_scale(D, variants{v});
    printf('%s %s %s\n', studies{s}, names{v}, sprintf('%.9f ', Q));
  end
end
