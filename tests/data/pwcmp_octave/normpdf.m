function y = normpdf(x, mu, sigma)
% Shim: Octave 7 core lacks normpdf (statistics package).
y = exp(-0.5 * ((x - mu) ./ sigma).^2) ./ (sqrt(2 * pi) * sigma);
end
