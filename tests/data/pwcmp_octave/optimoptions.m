function opts = optimoptions(solver, varargin)
% Shim: Octave 7 lacks optimoptions. Maps pw_scale's options to optimset and adds fminunc
% tolerances from the environment: FMINUNC_TOL=t sets TolFun = TolX = t, MaxIter 1e5, MaxFunEvals 1e6
% (unset: fminunc's defaults).
opts = optimset('Display', 'off');
for kk = 1:2:numel(varargin)
  switch varargin{kk}
    case 'SpecifyObjectiveGradient'
      if varargin{kk+1}, opts = optimset(opts, 'GradObj', 'on'); end
    case 'Display'
      opts = optimset(opts, 'Display', varargin{kk+1});
    otherwise
      error('optimoptions shim: unhandled option %s', varargin{kk});
  end
end
tol = str2double(getenv('FMINUNC_TOL'));
if ~isnan(tol)
  opts = optimset(opts, 'TolFun', tol, 'TolX', tol, 'MaxIter', 1e5, 'MaxFunEvals', 1e6);
end
end
